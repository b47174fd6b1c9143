"""Reading and writing clips: lossless round trips, frame rate kept, audio copied, clear errors."""

from fractions import Fraction

import av
import numpy as np
import pytest

from septet.errors import InputError
from septet.video.video_io import VideoWriter, codec_for, probe, read_frames


def random_frames(count=5, height=48, width=64, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


@pytest.mark.parametrize("name", ["clip.avi", "clip.mkv", "clip.mov", "clip.mp4", "frames"])
def test_lossless_outputs_give_back_every_byte(tmp_path, name):
    frames = random_frames()
    target = tmp_path / name
    with VideoWriter(target, 64, 48, Fraction(30000, 1001), lossless=True) as writer:
        for frame in frames:
            writer.write(frame)
    back = list(read_frames(target))
    assert len(back) == len(frames)
    assert all(np.array_equal(a, b) for a, b in zip(frames, back, strict=True))
    info = probe(target)
    assert (info.width, info.height, info.fps) == (64, 48, Fraction(30000, 1001))


def test_default_codecs_are_lossless_for_folders_avi_and_mkv_and_h264_for_mp4(tmp_path):
    assert codec_for(tmp_path / "out", None) == "png-images"
    assert codec_for(tmp_path / "out.avi", None) == "ffv1"
    assert codec_for(tmp_path / "out.mkv", None) == "ffv1"
    assert codec_for(tmp_path / "out.mp4", None) == "libx264"
    assert codec_for(tmp_path / "out.mp4", True) == "libx264rgb"


def test_a_failed_write_leaves_no_file_behind(tmp_path):
    target = tmp_path / "clip.avi"
    with pytest.raises(RuntimeError), VideoWriter(target, 64, 48, Fraction(25)) as writer:
        writer.write(random_frames(1)[0])
        raise RuntimeError("crash mid-way")
    assert list(tmp_path.iterdir()) == []


def write_clip_with_audio(path, frames, seconds_per_frame=Fraction(1, 25)):
    """An mp4 with H.264 video and an AAC sine tone as long as the video."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=44100)
        for frame in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        samples = int(44100 * len(frames) * seconds_per_frame)
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / 44100)).astype(np.float32)
        for start in range(0, samples, 1024):
            chunk = tone[start : start + 1024][None, :]
            audio_frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            audio_frame.sample_rate = 44100
            audio_frame.pts = start
            for packet in audio.encode(audio_frame):
                container.mux(packet)
        for packet in audio.encode(None):
            container.mux(packet)


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".mkv"])
def test_audio_is_carried_over(tmp_path, suffix):
    frames = random_frames(25)
    source = tmp_path / "with-audio.mp4"
    write_clip_with_audio(source, frames)
    assert probe(source).has_audio
    target = tmp_path / f"out{suffix}"
    with VideoWriter(target, 64, 48, Fraction(25), audio_from=source) as writer:
        for frame in read_frames(source):
            writer.write(frame)
    with av.open(str(target)) as container:
        assert len(container.streams.audio) == 1
        decoded = sum(f.samples for f in container.decode(audio=0))
    assert decoded == pytest.approx(44100, rel=0.05)  # one second of sound, as in the input
    assert len(list(read_frames(target))) == 25


def test_unreadable_input_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(InputError, match="cannot read video"):
        probe(junk)
    with pytest.raises(InputError, match="does not exist"):
        probe(tmp_path / "missing.mp4")


def test_an_empty_clip_is_a_clear_error(tmp_path):
    empty_folder = tmp_path / "empty"
    empty_folder.mkdir()
    with pytest.raises(InputError, match="no images"):
        probe(empty_folder)
    empty_video = tmp_path / "empty.mkv"
    with av.open(str(empty_video), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "bgr0"
        container.start_encoding()  # the header only, no frames
    with pytest.raises(InputError, match=r"is empty.*no frames"):
        probe(empty_video)


def test_frames_of_different_sizes_in_a_folder_are_an_error(tmp_path):
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "0001.png"), np.zeros((10, 10, 3), np.uint8))
    cv2.imwrite(str(folder / "0002.png"), np.zeros((12, 10, 3), np.uint8))
    with pytest.raises(InputError, match="one size"):
        list(read_frames(folder))
