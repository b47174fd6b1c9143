"""``septet video ...``: remove an object, see a frame with a pixel grid, choose a box."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, help="Remove an object from a video by boxing it.")


@app.command()
def remove(
    input: Path = typer.Argument(..., help="Video file (mp4, avi, mov, mkv) or image folder."),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Video file or folder (no suffix) to write."
    ),
    box: str | None = typer.Option(
        None, "--box", help="x,y,w,h of the object on --frame, in pixels."
    ),
    frame: int = typer.Option(0, "--frame", help="The frame the box is drawn on."),
    mask_dir: Path | None = typer.Option(
        None, "--mask-dir", help="Folder of one mask image per frame (nonzero = object)."
    ),
    dilate: int | None = typer.Option(
        None, "--dilate", help="Grow the mask by this many pixels [default: long side / 80]."
    ),
    context: int = typer.Option(15, "--context", help="Frames each side to take pixels from."),
    lossless: bool | None = typer.Option(
        None,
        "--lossless/--lossy",
        help="Lossless output codec [default: lossless for folders, avi, mkv; H.264 for mp4/mov].",
    ),
    masks_out: Path | None = typer.Option(
        None, "--masks-out", help="Also write the object masks to this folder."
    ),
    audio: bool = typer.Option(True, "--audio/--no-audio", help="Copy the input's audio."),
) -> None:
    """Remove the object in --box (or in --mask-dir's masks) and fill in the background."""
    from septet.video.pipeline import RemovalConfig, remove_object

    config = RemovalConfig(dilate=dilate, context=context, lossless=lossless, keep_audio=audio)
    result = remove_object(
        input, output, box, frame=frame, mask_dir=mask_dir, config=config, masks_out=masks_out
    )
    typer.echo(
        f"wrote {result.output}: {result.frames} frames, {result.width}x{result.height} at "
        f"{float(result.fps):g} fps ({result.codec}), mask dilated by {result.dilate} px, "
        f"{result.seconds:.1f} s ({result.frames_per_second:.1f} frames/s)"
    )


@app.command("frame")
def frame_png(
    input: Path = typer.Argument(..., help="Video file or image folder."),
    output: Path = typer.Option(..., "--output", "-o", help="PNG file to write."),
    frame: int = typer.Option(0, "--frame", help="Which frame."),
    grid: int | None = typer.Option(None, "--grid", help="Grid spacing in pixels [default: auto]."),
) -> None:
    """Write one frame as a PNG with a labelled pixel grid, to read a box's x,y,w,h off it."""
    from septet.video.chooser import write_grid_frame

    written = write_grid_frame(input, output, frame, grid)
    typer.echo(f"wrote {written}: frame {frame} with a pixel grid")


@app.command()
def choose(
    input: Path = typer.Argument(..., help="Video file or image folder."),
    frame: int = typer.Option(0, "--frame", help="Which frame to draw the box on."),
    web: bool = typer.Option(
        False, "--web", help="Serve a page on localhost to drag the box in any browser."
    ),
    port: int = typer.Option(0, "--port", help="Port for --web [default: any free port]."),
) -> None:
    """Draw the box with the mouse (a window, or a local web page with --web); prints --box."""
    from septet.video.chooser import choose_box_in_browser, select_box_on_screen

    if web:
        box = choose_box_in_browser(
            input, frame, port, on_ready=lambda url: typer.echo(f"open {url} and drag a box")
        )
    else:
        box = select_box_on_screen(input, frame)
    x, y, w, h = box.as_ints()
    typer.echo(f"--box {x},{y},{w},{h} --frame {frame}")


@app.command()
def info(input: Path = typer.Argument(..., help="Video file or image folder.")) -> None:
    """Print a clip's size, frame rate, frame count and whether it has audio."""
    from septet.video.video_io import probe

    clip = probe(input)
    count = clip.frame_count if clip.frame_count is not None else "unknown"
    typer.echo(
        f"{clip.path}: {clip.width}x{clip.height}, {float(clip.fps):g} fps, {count} frames, "
        f"{'with' if clip.has_audio else 'no'} audio"
    )
