"""The video demo: a cat's face glides over a panning photo of an astronaut; it is boxed on the
first frame, tracked, cut out and removed, and the result is scored against the clean plate."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from septet.common import DemoReport


def run_demo(out_dir: Path) -> DemoReport:
    """Make a 40-frame composite, remove the object, write input, output and a strip PNG."""
    import cv2
    import numpy as np

    from septet.video.composite import composite, linear_path, object_from_photo, photo_pan
    from septet.video.inpainting import spatial_fill
    from septet.video.metrics import psnr
    from septet.video.pipeline import dilate_mask, remove_object
    from septet.video.video_io import VideoWriter, read_frames

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames, width, height = 40, 320, 240
    texture, shape = object_from_photo("chelsea", 64, 80)
    path = linear_path((20, 40), (220, 150), frames, wobble=20)
    scene = list(composite(photo_pan("astronaut", height, width, frames), texture, shape, path))
    source = out_dir / "input.avi"
    with VideoWriter(source, width, height, Fraction(25)) as writer:
        for item in scene:
            writer.write(item.frame)
    output = out_dir / "removed.avi"
    result = remove_object(source, output, scene[0].box, masks_out=out_dir / "masks")
    removed = list(read_frames(output))
    masks = [m[..., 0] > 0 for m in read_frames(out_dir / "masks")]
    ours = np.mean([psnr(o, s.clean, s.mask) for o, s in zip(removed, scene, strict=True)])
    telea = np.mean(
        [
            psnr(spatial_fill(s.frame, dilate_mask(m, result.dilate)), s.clean, s.mask)
            for m, s in zip(masks, scene, strict=True)
        ]
    )
    middle = frames // 2
    mask_image = np.repeat(masks[middle][..., None].astype(np.uint8) * 255, 3, axis=2)
    strip = np.concatenate([scene[middle].frame, mask_image, removed[middle]], axis=1)
    cv2.imwrite(str(out_dir / "strip.png"), strip)
    return DemoReport(
        f"removed a moving object from {frames} frames at {result.frames_per_second:.1f} "
        f"frames/s; PSNR in the hole {ours:.1f} dB vs {telea:.1f} dB for per-frame Telea",
        [source, output, out_dir / "strip.png"],
    )
