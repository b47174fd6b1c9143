"""Video object removal: draw a box on a clip; the object is tracked, its mask cut in every
frame, and the hole filled from the other frames where the background shows, with every pixel
outside the (dilated) mask left byte for byte as it was.

Re-creates zllrunning/video-object-removal (SiamMask + deep video inpainting) with classical
parts that run on a CPU with no downloaded weights: CSRT tracking with re-detection, GrabCut
masks seeded by motion, flow-guided propagation (DIS optical flow), Telea for what no frame
shows. Each stage sits behind a small protocol (Tracker, Segmenter, Inpainter) so a learned
model can take its place.
"""

from septet.common.lazy import lazy_exports

__all__ = [
    "Box",
    "BoxChooserServer",
    "CSRTTracker",
    "FlowGuidedInpainter",
    "GrabCutSegmenter",
    "Inpainter",
    "RemovalConfig",
    "RemovalResult",
    "Segmenter",
    "SpatialInpainter",
    "Tracker",
    "VideoInfo",
    "VideoWriter",
    "choose_box_in_browser",
    "dilate_mask",
    "parse_box",
    "probe",
    "read_frames",
    "remove_object",
    "select_box_on_screen",
    "track_box",
    "write_grid_frame",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Box": ".box",
        "parse_box": ".box",
        "BoxChooserServer": ".chooser",
        "choose_box_in_browser": ".chooser",
        "select_box_on_screen": ".chooser",
        "write_grid_frame": ".chooser",
        "CSRTTracker": ".tracking",
        "Tracker": ".tracking",
        "track_box": ".tracking",
        "GrabCutSegmenter": ".segmentation",
        "Segmenter": ".segmentation",
        "FlowGuidedInpainter": ".inpainting",
        "Inpainter": ".inpainting",
        "SpatialInpainter": ".inpainting",
        "RemovalConfig": ".pipeline",
        "RemovalResult": ".pipeline",
        "dilate_mask": ".pipeline",
        "remove_object": ".pipeline",
        "VideoInfo": ".video_io",
        "VideoWriter": ".video_io",
        "probe": ".video_io",
        "read_frames": ".video_io",
    },
)
