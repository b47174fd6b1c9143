"""Reading and writing videos frame by frame: mp4/avi/mov/mkv files through PyAV (FFmpeg) and
folders of numbered images. Frames are BGR ``uint8`` arrays, as OpenCV uses them.

Nothing here holds more than one frame: readers are generators and writers encode as frames
arrive, so a clip of any length streams through in bounded memory. Audio is copied packet by
packet from the input (re-encoded only when the output container cannot hold its codec),
interleaved with the video as it is written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from septet.errors import ConfigError, InputError, MissingDependencyError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")
DEFAULT_FOLDER_FPS = Fraction(25)
FOLDER_CODEC = "png-images"  # not an FFmpeg codec: one PNG file per frame
FPS_FILE = "fps.txt"  # the frame rate of an image-folder clip, e.g. "30000/1001"

# Codec per container. Lossless choices keep every pixel byte-identical through a write and read:
# FFV1 and x264-RGB store BGR planes directly, with no YUV conversion or chroma subsampling.
_LOSSY = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "ffv1", ".avi": "ffv1"}
_LOSSLESS = {".mp4": "libx264rgb", ".m4v": "libx264rgb", ".mov": "png", ".mkv": "ffv1"}
_LOSSLESS[".avi"] = "ffv1"
_AUDIO_FALLBACK = {".avi": "pcm_s16le", ".mkv": "flac", ".mov": "aac", ".mp4": "aac"}


@dataclass(frozen=True)
class VideoInfo:
    """What a clip is: frame size, rate, frame count (None when the container does not say)."""

    path: Path
    width: int
    height: int
    fps: Fraction
    frame_count: int | None
    has_audio: bool
    is_folder: bool


def _av():
    try:
        import av
    except ImportError as error:  # pragma: no cover - the video extra installs it
        raise MissingDependencyError("av", "video") from error
    return av


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Open ``path`` (a video file or a folder of images) and describe it; InputError if it
    does not exist, cannot be decoded, or holds no frames."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"video {str(path)!r} does not exist; give a video file or image folder")
    if path.is_dir():
        files = _image_files(path)
        if not files:
            raise InputError(
                f"folder {str(path)!r} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                "an image-folder clip is one image per frame, named in frame order"
            )
        first = _read_image(files[0])
        return VideoInfo(
            path, first.shape[1], first.shape[0], _folder_fps(path), len(files), False, True
        )
    av = _av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{str(path)!r} has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or Fraction(25)
            count = stream.frames or None
            has_audio = bool(container.streams.audio)
            try:
                first = next(iter(container.decode(stream)), None)
            except av.error.EOFError:  # a header and no frames
                first = None
    except av.error.EOFError as error:
        raise InputError(
            f"video {str(path)!r} is empty or cut short: it has no frames to process"
        ) from error
    except av.error.FFmpegError as error:
        raise InputError(
            f"cannot read video {str(path)!r}: {error}; is it a video file (mp4, avi, mov, mkv)?"
        ) from error
    if first is None:
        raise InputError(f"video {str(path)!r} is empty: it has no frames to process")
    return VideoInfo(path, first.width, first.height, Fraction(rate), count, has_audio, False)


def _folder_fps(folder: Path) -> Fraction:
    # An image folder has no frame rate of its own; septet writes one beside the frames.
    sidecar = folder / FPS_FILE
    if sidecar.is_file():
        try:
            return Fraction(sidecar.read_text().strip())
        except (ValueError, ZeroDivisionError):
            pass
    return DEFAULT_FOLDER_FPS


def _read_image(file: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(file), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"cannot read image {str(file)!r}; is it a PNG/JPEG image?")
    return image


def read_frames(path: str | os.PathLike[str]) -> Iterator[np.ndarray]:
    """Every frame of the clip, in order, as a BGR uint8 array (one at a time)."""
    path = Path(path)
    info = probe(path)
    if info.is_folder:
        for file in _image_files(path):
            frame = _read_image(file)
            if frame.shape[:2] != (info.height, info.width):
                raise InputError(
                    f"image {str(file)!r} is {frame.shape[1]}x{frame.shape[0]}, but the clip's "
                    f"first frame is {info.width}x{info.height}; every frame must have one size"
                )
            yield frame
        return
    av = _av()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="bgr24")
        except av.error.FFmpegError as error:
            raise InputError(f"video {str(path)!r} is damaged: {error}") from error


def read_mask_folder(folder: str | os.PathLike[str]) -> Iterator[np.ndarray]:
    """Object masks from a folder of images, one per frame in name order: nonzero = object."""
    import cv2

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"mask folder {str(folder)!r} does not exist or is not a folder")
    files = _image_files(folder)
    if not files:
        raise InputError(f"mask folder {str(folder)!r} holds no images; give one mask per frame")
    for file in files:
        mask = cv2.imread(str(file), cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise InputError(f"cannot read mask image {str(file)!r}")
        yield mask > 0


def count_mask_files(folder: str | os.PathLike[str]) -> int:
    """How many mask images a mask folder holds."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"mask folder {str(folder)!r} does not exist or is not a folder")
    return len(_image_files(folder))


def is_folder_target(path: Path) -> bool:
    """An output path names an image folder when it has no video suffix."""
    return path.suffix.lower() not in VIDEO_SUFFIXES


def codec_for(path: Path, lossless: bool | None) -> str:
    """The video codec written to ``path``: lossless for folders, avi and mkv by default, and
    for mp4/mov when ``lossless`` is True."""
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES or suffix == ".webm":
        if suffix == ".webm":
            raise ConfigError("writing .webm is not supported; write mp4, avi, mov or mkv")
        return FOLDER_CODEC
    return _LOSSLESS[suffix] if lossless else _LOSSY[suffix]


class VideoWriter:
    """Writes frames to a video file or an image folder, atomically: the output appears under
    its name only when ``close()`` succeeds; on error nothing (or the old file) is there.

    ``audio_from`` copies that file's audio stream into the output, interleaved by time.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        width: int,
        height: int,
        fps: Fraction,
        *,
        lossless: bool | None = None,
        audio_from: str | os.PathLike[str] | None = None,
        quality_crf: int = 17,
    ):
        self.path = Path(path)
        self.width, self.height, self.fps = width, height, Fraction(fps)
        self.codec = codec_for(self.path, lossless)
        self.count = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.codec == FOLDER_CODEC:
            self._temp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
            os.chmod(self._temp, 0o755)
            self._container = None
            return
        av = _av()
        fd, temp = tempfile.mkstemp(
            prefix=f".{self.path.stem}.", suffix=self.path.suffix, dir=self.path.parent
        )
        os.close(fd)
        self._temp = Path(temp)
        self._container = av.open(str(self._temp), mode="w")
        stream = self._container.add_stream(self.codec, rate=self.fps)
        stream.width, stream.height = width, height
        if self.codec == "libx264":
            stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
            stream.options = {"crf": str(quality_crf), "preset": "veryfast"}
        elif self.codec == "libx264rgb":
            stream.pix_fmt = "bgr24"
            stream.options = {"qp": "0", "preset": "veryfast"}
        elif self.codec == "png":
            stream.pix_fmt = "rgb24"
        else:  # ffv1
            stream.pix_fmt = "bgr0"
        stream.time_base = Fraction(1, 1) / self.fps
        self._stream = stream
        self._audio = _AudioCopier(self._container, audio_from) if audio_from else None

    def write(self, frame: np.ndarray) -> None:
        """Append one BGR uint8 frame of the writer's size."""
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"frame of shape {frame.shape} {frame.dtype}; expected "
                f"({self.height}, {self.width}, 3) uint8"
            )
        if self._container is None:
            import cv2

            if not cv2.imwrite(str(self._temp / f"frame_{self.count:06d}.png"), frame):
                raise OSError(f"could not write a frame into {self._temp}")
        else:
            av = _av()
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="bgr24")
            video_frame.pts = self.count
            for packet in self._stream.encode(video_frame):
                self._container.mux(packet)
            if self._audio is not None:
                self._audio.mux_until(float((self.count + 1) / self.fps))
        self.count += 1

    def close(self) -> None:
        """Flush the encoder, copy the remaining audio and move the output into place."""
        if self._container is None:
            (self._temp / FPS_FILE).write_text(f"{self.fps}\n")
            if self.path.exists():
                shutil.rmtree(self.path) if self.path.is_dir() else self.path.unlink()
            os.replace(self._temp, self.path)
            return
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        if self._audio is not None:
            self._audio.mux_until(float("inf"))
            self._audio.close()
        self._container.close()
        os.replace(self._temp, self.path)

    def abort(self) -> None:
        """Drop what was written; the target path is left as it was."""
        with contextlib.suppress(Exception):
            if self._container is not None:
                if self._audio is not None:
                    self._audio.close()
                self._container.close()
        if self._temp.is_dir():
            shutil.rmtree(self._temp, ignore_errors=True)
        else:
            self._temp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class _AudioCopier:
    """Copies the first audio stream of ``source`` into ``output`` up to a given time, so that
    audio and video packets stay interleaved without buffering the whole track."""

    def __init__(self, output, source: str | os.PathLike[str]):
        av = _av()
        self._input = av.open(str(source))
        self._in_stream = self._input.streams.audio[0] if self._input.streams.audio else None
        self._packets = None
        self._pending = None
        self._transcode = False
        if self._in_stream is None:
            return
        suffix = Path(output.name).suffix.lower()
        self._out_stream = None
        if _container_accepts(suffix, self._in_stream):
            with contextlib.suppress(ValueError, av.error.FFmpegError):
                self._out_stream = output.add_stream_from_template(self._in_stream)
        if self._out_stream is None:
            codec = _AUDIO_FALLBACK.get(suffix, "aac")
            self._out_stream = output.add_stream(codec, rate=self._in_stream.rate)
            self._transcode = True
        self._packets = self._input.demux(self._in_stream)

    def mux_until(self, seconds: float) -> None:
        if self._packets is None:
            return
        output = self._out_stream.container
        while True:
            packet = self._pending if self._pending is not None else next(self._packets, None)
            self._pending = None
            if packet is None:
                if self._transcode:
                    for out in self._out_stream.encode(None):
                        output.mux(out)
                self._packets = None
                return
            if packet.pts is not None and float(packet.pts * packet.time_base) > seconds:
                self._pending = packet
                return
            if self._transcode:
                for frame in packet.decode():
                    frame.pts = None
                    for out in self._out_stream.encode(frame):
                        output.mux(out)
            elif packet.dts is not None:
                packet.stream = self._out_stream
                output.mux(packet)

    def close(self) -> None:
        self._input.close()


def _container_accepts(suffix: str, stream) -> bool:
    # AVI holds MP3/PCM/AC-3 audio; AAC in AVI plays badly in most players, so re-encode it.
    name = stream.codec_context.name
    if suffix == ".avi":
        return name in ("mp3", "pcm_s16le", "ac3")
    if suffix in (".mp4", ".m4v", ".mov"):
        return name in ("aac", "mp3", "ac3", "alac", "opus")
    return True
