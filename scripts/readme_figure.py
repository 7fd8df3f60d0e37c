"""Draw docs/sample.jpg (the README picture) from the demo output:
python scripts/readme_figure.py out/demo/shard-000000.tar street_kitti-v0"""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path

from simlidar.pipeline import schema
from simlidar.pipeline.output.preview import PreviewSample, contact_sheet


def main(shard: str, key: str, out: str = "docs/sample.jpg") -> None:
    with tarfile.open(shard) as tar:
        names = (schema.IMAGE, *schema.REQUIRED_MEMBERS)
        member = {name: tar.extractfile(f"{key}.{name}").read() for name in names}
    sparse = schema.decode_depth_png(member[schema.SPARSE])
    dense = schema.decode_depth_png(member[schema.DENSE])
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    sample = PreviewSample.decode(key, member[schema.IMAGE], sparse, dense)
    contact_sheet([sample], width=2400, row_height=400).save(out, quality=88)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
