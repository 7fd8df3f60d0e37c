"""What a finished run gives: the manifest, inspection, previews, publishing."""
