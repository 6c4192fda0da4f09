"""Pictures of CT and segmentations: overlay PNGs for ``ccq predict`` / ``ccq evaluate`` (``--overlays``)."""

from ccq.viz.overlays import overlay_files, write_overlays

__all__ = ["overlay_files", "write_overlays"]
