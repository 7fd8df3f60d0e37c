"""What one scan of a scene gives, per kind of scene: a photo's one view (with the
recorded extrinsics' error when asked), a virtual rig's views cut out of the photo,
a calibrated rig's cameras. Each returns Views for build_sample."""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from simlidar.sensors import MountJitter, sample_mount_jitter
from simlidar.sensors.camera import sparse_depth_image, transform_points
from simlidar.sensors.mount import jittered_pose

from ..sources.calibrated_rig import Calibration, rig_record
from ..sources.virtual_rig import Rig, render_view, rig_cameras
from .sample import View
from .scan import with_calibration_error
from .scene import ScanContext, SceneCamera


def _camera_view(context: ScanContext, index: int, key: str, T_cam_lidar: np.ndarray, sparse_m, fields) -> View:
    """The view of scene camera `index` as it is (its own image and dense depth)."""
    camera: SceneCamera = context.scene.cameras[index]
    return View(
        key=key,
        source_path=camera.source_path,
        K=camera.K,
        width=camera.width,
        height=camera.height,
        jpeg=camera.image.jpeg,
        image_reencoded=camera.image.reencoded,
        intrinsics_source=camera.intrinsics_source,
        prediction=camera.prediction,
        mesh=context.targets[index].summary,
        T_cam_lidar=T_cam_lidar,
        dense_m=camera.prediction.depth,
        sparse_m=sparse_m,
        fields={**fields, "edges": camera.edges},
        dense_png=camera.dense_png,
        source_meta=camera.source_meta,
    )


@dataclass(frozen=True)
class PhotoViews:
    """A photo: each scan is one sample `KEY-vINDEX`. calibration_error: ranges of the
    error of the recorded extrinsics (None: exact); drawn after the scan."""

    calibration_error: MountJitter | None = None

    def views(self, context: ScanContext) -> list[View]:
        camera, scan, T_cam_lidar = context.scene.cameras[0], context.scan, context.T_scene_lidar
        fields = {}
        if self.calibration_error is not None:
            T_error = jittered_pose(np.eye(4), *sample_mount_jitter(self.calibration_error, context.rng))
            fields = {"T_cam_lidar_true": T_cam_lidar.tolist()}
            size = (camera.width, camera.height)
            scan, T_cam_lidar = with_calibration_error(scan, T_cam_lidar, camera.K, *size, T_error)
        key = f"{context.scene.key}-v{context.index}"
        return [_camera_view(context, 0, key, T_cam_lidar, scan.sparse_depth_m, fields)]


@dataclass(frozen=True)
class VirtualRigViews:
    """`--rig virtual`: ONE scan in the photo's camera serves every view of the rig. Per
    view a sample `KEY-rINDEX`: the photo's RGB and dense depth resampled into the view,
    the scan's points re-projected with the view's own z-buffer, and teacher.png. The json
    carries the scene (the photo's key), the view's own K and T_cam_lidar, and the rig."""

    rig: Rig
    jpeg_quality: int

    def views(self, context: ScanContext) -> list[View]:
        photo, T_cam_lidar = context.scene.cameras[0], context.T_scene_lidar
        points_cam = transform_points(T_cam_lidar, context.scan.points_lidar[:, :3].astype(np.float64))
        cameras = rig_cameras(self.rig, photo.K, photo.width, photo.height)
        views = []
        for camera in cameras:
            with context.times.stage("rig"):
                image = render_view(camera, photo.K, photo.image.rgb, photo.prediction.depth, points_cam)
            R_view_photo = camera.R_photo_view.T
            T_view_lidar = np.eye(4)
            T_view_lidar[:3] = R_view_photo @ T_cam_lidar[:3]
            with context.times.stage("encode"):
                buffer = io.BytesIO()
                Image.fromarray(image.rgb).save(buffer, format="JPEG", quality=self.jpeg_quality)
            rig = {
                "name": self.rig.name,
                "view": camera.index,
                "views": len(cameras),
                "yaw_deg": float(np.rad2deg(camera.yaw_rad)),
                "R_view_photo": R_view_photo.tolist(),
                "neighbours": list(camera.neighbours),
                "outside_pixels": image.outside_pixels,
            }
            views.append(
                View(
                    key=f"{context.scene.key}-r{camera.index}",
                    source_path=photo.source_path,
                    K=camera.K,
                    width=camera.width,
                    height=camera.height,
                    jpeg=buffer.getvalue(),
                    image_reencoded=True,
                    intrinsics_source=photo.intrinsics_source,
                    prediction=photo.prediction,
                    mesh=context.targets[0].summary,
                    T_cam_lidar=T_view_lidar,
                    dense_m=image.dense_m,
                    sparse_m=image.sparse_m,
                    fields={
                        "scene": context.scene.key,
                        "edges": photo.edges,
                        "rig": rig,
                        "photo": {"image_size": [photo.width, photo.height], "K": photo.K.tolist()},
                    },
                    teacher_relative=True,
                    source_meta=photo.source_meta,
                )
            )
        return views


@dataclass(frozen=True)
class CalibratedViews:
    """A calibrated rig's frame: per camera a sample `FRAME-rINDEX` with its own image,
    dense depth and the scan's points in its own z-buffer."""

    calibration: Calibration

    def views(self, context: ScanContext) -> list[View]:
        calibration, T_rig_lidar = self.calibration, context.T_scene_lidar
        views = []
        for index, camera in enumerate(context.scene.cameras):
            scan_camera = camera.scan_camera("uniform")
            with context.times.stage("rig"):
                sparse_m, _ = sparse_depth_image(
                    scan_camera.from_scene(context.scan.points_scene), camera.K, camera.width, camera.height
                )
            rig = rig_record(calibration, index, T_rig_lidar)
            T_cam_lidar = scan_camera.T_cam_scene @ T_rig_lidar
            key = f"{context.scene.key}-r{index}"
            view = _camera_view(context, index, key, T_cam_lidar, sparse_m, {"scene": context.scene.key, "rig": rig})
            views.append(dataclasses.replace(view, teacher_relative=True))
        return views
