"""Uploads and configuration: content-addressed blobs, snapshots, file restore and versions, retention."""
