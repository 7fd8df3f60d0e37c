"""What a finished run gives (the manifest, inspection, previews, publishing) and the
output folder's own ground rules: its file operations in one place (store) and the
lock that lets one run at a time write there."""
