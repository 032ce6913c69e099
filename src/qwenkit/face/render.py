"""Headless rendering of face-mesh sequences to MP4 with the driving audio muxed in.

The default renderer needs nothing but Pillow: orthographic projection, triangles drawn far to near (painter's
algorithm) with Lambert shading; lip triangles are tinted, and triangles stretched open by the jaw are darkened as
the mouth cavity. ``PyrenderRenderer`` rasterises the same coloured triangles with OpenGL through pyrender, headless
(EGL or OSMesa), with a depth buffer instead of the painter's ordering. Frames are piped to ffmpeg (Debian ``ffmpeg``;
H.264 yuv420p + AAC). A blank frame is an error, never a silent black video.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qwenkit.face.errors import RenderError

_BACKGROUND = (24, 26, 32)
_SKIN = np.array([226, 188, 160], np.float64)
_LIPS = np.array([190, 80, 86], np.float64)
_CAVITY = np.array([40, 10, 16], np.float64)


def _triangle_areas(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    a, b, c = (vertices[triangles[:, i]] for i in range(3))
    return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)


class _FaceShading:
    """The camera framing and per-triangle colours both renderers share (orthographic view along -z)."""

    def __init__(self, triangles: np.ndarray, template: np.ndarray, lip_idx: Sequence[int] | None = None,
                 size: int = 256, light=(0.3, 0.4, 1.0)):
        self.triangles = np.asarray(triangles, dtype=np.int64)
        self.size = size
        self.light = np.asarray(light, np.float64) / np.linalg.norm(light)
        template = np.asarray(template, np.float64)
        self.centre = (template.max(0) + template.min(0)) / 2
        self.half_extent = float(np.max(template.max(0)[:2] - template.min(0)[:2])) / 2 * 1.1
        self.rest_areas = _triangle_areas(template, self.triangles) + 1e-12
        lips = np.zeros(len(template), bool)
        if lip_idx is not None:
            lips[np.asarray(lip_idx, dtype=np.int64)] = True
        self.lip_triangles = lips[self.triangles].sum(1) >= 2

    def colours(self, points: np.ndarray) -> np.ndarray:
        """(F, 3) RGB in [0, 255] of centred ``points``: Lambert shade of the skin or lip colour, blended towards
        the cavity colour as a triangle is stretched past 1.15x its rest area (fully at 1.75x)."""
        a, b, c = (points[self.triangles[:, i]] for i in range(3))
        normals = np.cross(b - a, c - a)
        normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
        shade = 0.25 + 0.75 * np.clip(np.abs(normals @ self.light), 0, 1)
        stretch = np.clip((_triangle_areas(points, self.triangles) / self.rest_areas - 1.15) / 0.6, 0, 1)
        base = np.where(self.lip_triangles[:, None], _LIPS, _SKIN)
        return np.clip((base * (1 - stretch[:, None]) + _CAVITY * stretch[:, None]) * shade[:, None], 0, 255)


class PILRenderer(_FaceShading):
    """Painter's-algorithm renderer of one mesh topology; ``render(vertices) -> (H, W, 3) uint8``."""

    def render(self, vertices: np.ndarray) -> np.ndarray:
        from PIL import Image, ImageDraw

        points = np.asarray(vertices, np.float64) - self.centre
        colours = self.colours(points)
        pixels = np.empty((len(points), 2))
        pixels[:, 0] = (points[:, 0] / self.half_extent + 1) * self.size / 2
        pixels[:, 1] = (1 - points[:, 1] / self.half_extent) * self.size / 2
        image = Image.new("RGB", (self.size, self.size), _BACKGROUND)
        draw = ImageDraw.Draw(image)
        depth = points[self.triangles].mean(axis=1)[:, 2]
        for t in np.argsort(depth):
            corners = [tuple(pixels[i]) for i in self.triangles[t]]
            draw.polygon(corners, fill=tuple(int(v) for v in colours[t]))
        return np.asarray(image)

    def close(self) -> None:
        """Nothing to release (the OpenGL renderer frees its context here)."""


GL_BACKENDS = {
    "egl": ("EGL", "libegl1 libegl-mesa0 libgl1-mesa-dri"),
    "osmesa": ("OSMesa", "libosmesa6"),
}
RENDERERS = ("pil", *GL_BACKENDS)


def _import_pyrender(backend: str):
    """pyrender on the headless OpenGL platform ``backend``, or a RenderError naming what to install."""
    import ctypes.util

    if backend not in GL_BACKENDS:
        raise RenderError(f"unknown renderer {backend!r}; choose one of {', '.join(RENDERERS)}")
    library, packages = GL_BACKENDS[backend]
    if ctypes.util.find_library(library) is None:
        raise RenderError(f"the {backend} renderer needs the {library} library, which is not installed: "
                          f"apt-get install {packages} (or use --renderer pil)")
    chosen = os.environ.get("PYOPENGL_PLATFORM")
    if "OpenGL" in sys.modules and chosen != backend:
        raise RenderError(f"this process already loaded OpenGL for platform {chosen or 'default'!r}; the {backend} "
                          "renderer needs a new process (set PYOPENGL_PLATFORM before anything imports OpenGL)")
    os.environ["PYOPENGL_PLATFORM"] = backend
    try:
        import pyrender
    except ImportError as error:
        raise RenderError(f"the {backend} renderer needs the pyrender package ({error}): pip install pyrender "
                          "(the face extra installs it), or use --renderer pil") from error
    if backend == "osmesa":
        import OpenGL.osmesa

        if not hasattr(OpenGL.osmesa, "OSMesaCreateContextAttribs"):
            import OpenGL

            raise RenderError(f"pyrender's OSMesa platform needs PyOpenGL >= 3.1.5 (this is {OpenGL.__version__}, "
                              "the version pyrender pins): pip install --no-deps PyOpenGL==3.1.9, or use --renderer "
                              "egl")
    return pyrender


class PyrenderRenderer(_FaceShading):
    """The PIL renderer's camera and colours rasterised by OpenGL (pyrender, headless EGL or OSMesa).

    Each triangle gets its own three vertices carrying its colour, drawn unlit (``RenderFlags.FLAT``), so a frame
    differs from the PIL one only where the depth buffer and the painter's ordering disagree and along edges.
    """

    def __init__(self, triangles: np.ndarray, template: np.ndarray, lip_idx: Sequence[int] | None = None,
                 size: int = 256, light=(0.3, 0.4, 1.0), backend: str = "egl"):
        super().__init__(triangles, template, lip_idx, size, light)
        self.pyrender = _import_pyrender(backend)
        self.backend = backend
        template = np.asarray(template, np.float64)
        depth = float(np.ptp(template[:, 2])) + self.half_extent
        camera = self.pyrender.OrthographicCamera(xmag=self.half_extent, ymag=self.half_extent, znear=0.01 * depth,
                                                  zfar=20 * depth)
        pose = np.eye(4)
        pose[2, 3] = 10 * depth
        self.scene = self.pyrender.Scene(bg_color=[*(np.array(_BACKGROUND) / 255), 1.0], ambient_light=[1, 1, 1])
        self.scene.add(camera, pose=pose)
        self.node = None
        try:
            self.renderer = self.pyrender.OffscreenRenderer(size, size)
        except Exception as error:  # noqa: BLE001 - any platform failure becomes one actionable message
            library, packages = GL_BACKENDS[backend]
            raise RenderError(f"cannot create a headless {library} OpenGL context ({type(error).__name__}: {error}); "
                              f"check apt-get install {packages}, or use --renderer pil") from error

    def render(self, vertices: np.ndarray) -> np.ndarray:
        points = np.asarray(vertices, np.float64) - self.centre
        colours = self.colours(points)
        corners = points[self.triangles].reshape(-1, 3).astype(np.float32)
        primitive = self.pyrender.Primitive(positions=corners, color_0=np.repeat(colours / 255, 3, axis=0),
                                            mode=self.pyrender.constants.GLTF.TRIANGLES)
        if self.node is not None:
            self.scene.remove_node(self.node)
        self.node = self.scene.add(self.pyrender.Mesh([primitive]))
        colour, _ = self.renderer.render(self.scene, flags=self.pyrender.RenderFlags.FLAT
                                         | self.pyrender.RenderFlags.SKIP_CULL_FACES)
        return np.ascontiguousarray(colour[..., :3])

    def close(self) -> None:
        self.renderer.delete()


def make_renderer(renderer: str, triangles: np.ndarray, template: np.ndarray, lip_idx=None, size: int = 256):
    """``"pil"`` (default, Pillow only) or an OpenGL backend (``"egl"``, ``"osmesa"``) through pyrender."""
    if renderer == "pil":
        return PILRenderer(triangles, template, lip_idx, size)
    return PyrenderRenderer(triangles, template, lip_idx, size, backend=renderer)


def check_not_blank(frame: np.ndarray, index: int) -> None:
    """A frame that is one colour (or only background) means the renderer failed: raise, never write it."""
    foreground = np.any(np.abs(frame.astype(int) - np.array(_BACKGROUND)) > 8, axis=-1).mean()
    if frame.std() < 1.0 or foreground < 0.02:
        raise RenderError(f"frame {index} is blank (foreground {foreground:.1%} of pixels); the mesh is outside the "
                          "view or the renderer failed")


def render_frames(renderer: PILRenderer | PyrenderRenderer, sequences: Sequence[np.ndarray], *,
                  quiet: bool | None = None) -> list:
    """Frames of one or more (T, V, 3) sequences placed side by side (e.g. ground truth | prediction)."""
    from qwenkit.core.progress import track

    frames = min(len(s) for s in sequences)
    images = []
    for t in track(range(frames), "rendering", quiet=quiet):
        frame = np.concatenate([renderer.render(s[t]) for s in sequences], axis=1)
        check_not_blank(frame, t)
        images.append(frame)
    return images


def write_mp4(frames: Sequence[np.ndarray], path: str | Path, fps: float, audio_path: str | Path | None = None) -> Path:
    """Encode RGB frames as H.264 yuv420p MP4 at ``fps``, with the wav at ``audio_path`` muxed in as AAC."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RenderError("ffmpeg is not installed; apt-get install ffmpeg")
    if not frames:
        raise RenderError("no frames to write")
    height, width = frames[0].shape[:2]
    if height % 2 or width % 2:
        raise RenderError(f"frame size {width}x{height} must be even for yuv420p")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    command = [ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
               "-r", f"{fps:g}", "-i", "-"]
    if audio_path is not None:
        command += ["-i", str(audio_path), "-c:a", "aac", "-b:a", "64k", "-shortest"]
    command += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast", "-crf", "20", str(path)]
    data = b"".join(np.ascontiguousarray(f, dtype=np.uint8).tobytes() for f in frames)
    result = subprocess.run(command, input=data, capture_output=True)
    if result.returncode != 0:
        raise RenderError(f"ffmpeg failed writing {str(path)!r}: {result.stderr.decode(errors='replace').strip()}")
    return path


def render_video(sequences: Sequence[np.ndarray], triangles: np.ndarray, template: np.ndarray, path: str | Path,
                 fps: float, *, audio: np.ndarray | None = None, sample_rate: int = 16000, lip_idx=None,
                 size: int = 256, quiet: bool | None = None, renderer: str = "pil") -> Path:
    """Render (T, V, 3) sequences side by side to an MP4 with ``audio`` (float samples) muxed in.

    ``renderer`` is ``"pil"`` or an OpenGL backend of ``PyrenderRenderer`` (``"egl"``, ``"osmesa"``).
    """
    import tempfile

    from scipy.io import wavfile

    drawer = make_renderer(renderer, triangles, template, lip_idx, size)
    try:
        frames = render_frames(drawer, sequences, quiet=quiet)
    finally:
        drawer.close()
    if audio is None:
        return write_mp4(frames, path, fps)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "audio.wav"
        wavfile.write(wav, sample_rate, (np.clip(audio, -1, 1) * 32767).astype(np.int16))
        return write_mp4(frames, path, fps, wav)


def probe(path: str | Path) -> dict:
    """Streams of a media file via ffprobe: ``{"video_frames": int, "width", "height", "audio_streams": int}``."""
    import json

    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        raise RenderError("ffprobe is not installed; apt-get install ffmpeg")
    result = subprocess.run([ffprobe, "-v", "error", "-count_frames", "-show_streams", "-of", "json", str(path)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RenderError(f"ffprobe cannot read {str(path)!r}: {result.stderr.strip()}")
    streams = json.loads(result.stdout)["streams"]
    video = [s for s in streams if s["codec_type"] == "video"]
    return {"video_frames": int(video[0]["nb_read_frames"]) if video else 0,
            "width": int(video[0]["width"]) if video else 0, "height": int(video[0]["height"]) if video else 0,
            "video_codec": video[0]["codec_name"] if video else None,
            "audio_streams": sum(s["codec_type"] == "audio" for s in streams)}


def decode_frames(path: str | Path) -> np.ndarray:
    """All frames of a video as (N, H, W, 3) uint8 (through ffmpeg)."""
    info = probe(path)
    result = subprocess.run([shutil.which("ffmpeg") or "ffmpeg", "-loglevel", "error", "-i", str(path), "-f",
                             "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True)
    if result.returncode != 0:
        raise RenderError(f"ffmpeg cannot decode {str(path)!r}: {result.stderr.decode(errors='replace').strip()}")
    return np.frombuffer(result.stdout, np.uint8).reshape(-1, info["height"], info["width"], 3)
