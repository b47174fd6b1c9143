"""Choosing the box without guessing coordinates: a frame written as a PNG with a labelled pixel
grid (works anywhere), a small page served on localhost where the box is dragged with the mouse
(any browser, no display on this machine needed), and OpenCV's selector when a display exists.
"""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from septet.errors import InputError, MissingDependencyError
from septet.video.box import Box, check_box_in_frame
from septet.video.video_io import probe, read_frames


def read_frame(path: str | os.PathLike[str], index: int = 0) -> np.ndarray:
    """Frame ``index`` of a clip (BGR uint8); InputError when the clip is shorter."""
    if index < 0:
        raise InputError(f"--frame {index} is negative; frames are numbered from 0")
    count = 0
    for count, frame in enumerate(read_frames(path)):
        if count == index:
            return frame
    raise InputError(
        f"--frame {index} is past the clip's end: it has {count + 1} frames (0 to {count})"
    )


def grid_step(width: int, height: int) -> int:
    """A round grid spacing giving at most 12 lines across the long side."""
    for step in (10, 20, 25, 50, 100, 200, 250, 500, 1000):
        if max(width, height) / step <= 12:
            return step
    return 1000


def draw_grid(frame: np.ndarray, step: int | None = None) -> np.ndarray:
    """A copy of ``frame`` with grid lines every ``step`` pixels, labelled with their x and y."""
    import cv2

    height, width = frame.shape[:2]
    step = step or grid_step(width, height)
    out = frame.copy()
    overlay = frame.copy()
    for x in range(0, width, step):
        cv2.line(overlay, (x, 0), (x, height - 1), (0, 255, 255), 1)
    for y in range(0, height, step):
        cv2.line(overlay, (0, y), (width - 1, y), (0, 255, 255), 1)
    cv2.addWeighted(overlay, 0.5, out, 0.5, 0, out)
    font_scale = max(0.3, min(width, height) / 900)
    for x in range(step, width, step):
        _label(out, str(x), (x + 2, int(14 * font_scale / 0.4)), font_scale)
    for y in range(step, height, step):
        _label(out, str(y), (2, y - 3), font_scale)
    return out


def _label(image: np.ndarray, text: str, origin: tuple[int, int], scale: float) -> None:
    import cv2

    # Dark outline under light text stays readable on any background.
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 255, 255), 1, cv2.LINE_AA)


def write_grid_frame(
    path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    index: int = 0,
    step: int | None = None,
) -> Path:
    """Write frame ``index`` of ``path`` with a labelled pixel grid as a PNG at ``output``."""
    import cv2

    from septet.common import atomic_write_bytes

    ok, data = cv2.imencode(".png", draw_grid(read_frame(path, index), step))
    if not ok:  # pragma: no cover - PNG encoding of a uint8 image does not fail
        raise OSError("could not encode the frame as PNG")
    atomic_write_bytes(output, data.tobytes())
    return Path(output)


def has_display() -> bool:
    """True when a window can be opened (an X11 or Wayland display is set)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def select_box_on_screen(path: str | os.PathLike[str], index: int = 0) -> Box:
    """OpenCV's interactive selector on frame ``index``: drag a box, press Enter."""
    import cv2

    frame = read_frame(path, index)
    if not has_display():
        raise InputError(
            "no display to open a window on; use `septet video choose --web` (a page in any "
            "browser) or `septet video frame` (a PNG with a pixel grid) instead"
        )
    try:
        x, y, w, h = cv2.selectROI("septet: drag a box around the object, then Enter", frame)
        cv2.destroyAllWindows()
    except cv2.error as error:
        raise MissingDependencyError("opencv-contrib-python (with GUI support)", "video") from error
    if w == 0 or h == 0:
        raise InputError("no box was drawn; drag a box around the object and press Enter")
    return Box(float(x), float(y), float(w), float(h))


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>septet: choose the box</title>
<style>body{font-family:sans-serif;margin:1em} canvas{cursor:crosshair;border:1px solid #888}
#box{font-family:monospace;font-size:1.2em}</style></head>
<body><p>Drag a box around the object on frame __INDEX__, then press <b>Use this box</b>.</p>
<canvas id="c" width="__W__" height="__H__"></canvas>
<p>--box <span id="box">(none yet)</span> <button id="use" disabled>Use this box</button></p>
<p id="done"></p>
<script>
const c = document.getElementById('c'), g = c.getContext('2d'), img = new Image();
let start = null, box = null;
img.onload = () => g.drawImage(img, 0, 0);
img.src = 'frame.png';
function pos(e) { const r = c.getBoundingClientRect();
  return [Math.round((e.clientX - r.left) * c.width / r.width),
          Math.round((e.clientY - r.top) * c.height / r.height)]; }
function draw() { g.drawImage(img, 0, 0); if (!box) return;
  g.strokeStyle = '#0f0'; g.lineWidth = 2; g.strokeRect(box[0], box[1], box[2], box[3]);
  document.getElementById('box').textContent = box.join(',');
  document.getElementById('use').disabled = box[2] < 2 || box[3] < 2; }
c.onmousedown = e => { start = pos(e); box = null; };
c.onmousemove = e => { if (!start) return; const p = pos(e);
  box = [Math.min(start[0], p[0]), Math.min(start[1], p[1]),
         Math.abs(p[0] - start[0]), Math.abs(p[1] - start[1])]; draw(); };
c.onmouseup = () => { start = null; };
document.getElementById('use').onclick = async () => {
  const r = await fetch('box', {method: 'POST', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({x: box[0], y: box[1], w: box[2], h: box[3]})});
  document.getElementById('done').textContent = r.ok ? 'Done: you can close this page.'
                                                       : 'Error: ' + await r.text(); };
</script></body></html>
"""


class BoxChooserServer:
    """A page on ``http://127.0.0.1:<port>/`` showing one frame; the box dragged there and sent
    (POST /box with JSON x, y, w, h) is checked against the frame and handed to ``wait``."""

    def __init__(self, frame: np.ndarray, index: int = 0, port: int = 0):
        import cv2

        ok, png = cv2.imencode(".png", frame)
        if not ok:  # pragma: no cover
            raise OSError("could not encode the frame as PNG")
        height, width = frame.shape[:2]
        page = _PAGE.replace("__W__", str(width)).replace("__H__", str(height))
        page = page.replace("__INDEX__", str(index)).encode()
        self.box: Box | None = None
        self._chosen = threading.Event()
        chooser = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep the terminal for the result
                pass

            def _send(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path in ("/", "/index.html"):
                    self._send(200, page, "text/html; charset=utf-8")
                elif self.path == "/frame.png":
                    self._send(200, png.tobytes(), "image/png")
                else:
                    self._send(404, b"not found", "text/plain")

            def do_POST(self) -> None:
                if self.path != "/box":
                    self._send(404, b"not found", "text/plain")
                    return
                try:
                    length = int(self.headers.get("Content-Length", "0"))
                    data = json.loads(self.rfile.read(length) or b"{}")
                    box = Box(*(float(data[k]) for k in ("x", "y", "w", "h")))
                    box = check_box_in_frame(box, width, height)
                except (ValueError, KeyError, TypeError, InputError) as error:
                    self._send(400, f"bad box: {error}".encode(), "text/plain")
                    return
                chooser.box = box
                self._send(
                    200, json.dumps({"box": list(box.as_ints())}).encode(), "application/json"
                )
                chooser._chosen.set()

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> BoxChooserServer:
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> Box:
        """The box sent from the page; InputError if none came within ``timeout`` seconds."""
        if not self._chosen.wait(timeout):
            raise InputError(f"no box was chosen on {self.url} within {timeout:g} s")
        return self.box

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> BoxChooserServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def choose_box_in_browser(
    path: str | os.PathLike[str],
    index: int = 0,
    port: int = 0,
    timeout: float | None = None,
    on_ready=print,
) -> Box:
    """Serve frame ``index`` on localhost, call ``on_ready(url)``, and return the box sent."""
    probe(path)
    with BoxChooserServer(read_frame(path, index), index, port) as server:
        on_ready(server.url)
        return server.wait(timeout)
