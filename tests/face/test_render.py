"""The MP4 decodes, has the right frame count and an audio stream, is not blank, and the mouth moves."""

import numpy as np
import pytest

from qwenkit.face import render
from qwenkit.face.mesh import BLENDSHAPES, make_face, pose


def _talking(face, frames=12):
    weights = np.zeros((frames, len(BLENDSHAPES)), np.float32)
    weights[:, 0] = (np.arange(frames) % 6) / 5.0  # the jaw opens and closes
    return pose(face, weights)


def test_mp4_with_audio_is_decodable_and_the_mouth_moves(tmp_path):
    face = make_face(16)
    motion = _talking(face)
    audio = np.sin(np.linspace(0, 2000, 16000 * 12 // 30)).astype(np.float32) * 0.3
    path = render.render_video([motion, motion], face.triangles, face.vertices, tmp_path / "clip.mp4", 30,
                               audio=audio, lip_idx=face.lip_idx, size=96, quiet=True)
    info = render.probe(path)
    assert info == {"video_frames": 12, "width": 192, "height": 96, "video_codec": "h264", "audio_streams": 1}
    frames = render.decode_frames(path).astype(float)
    assert frames.shape == (12, 96, 192, 3) and frames.std() > 10
    mouth = frames[:, 55:80, 30:66]  # lower middle of the left panel
    brow = frames[:, 5:30, 30:66]
    closed, wide = 0, 5
    assert np.abs(mouth[wide] - mouth[closed]).mean() > 3 * np.abs(brow[wide] - brow[closed]).mean() + 1


def test_blank_frames_are_an_error(tmp_path):
    face = make_face(8)
    far_away = face.vertices[None] + np.array([10.0, 10.0, 0.0], np.float32)
    with pytest.raises(render.RenderError, match="blank"):
        render.render_video([far_away], face.triangles, face.vertices, tmp_path / "x.mp4", 30, quiet=True)
    assert not (tmp_path / "x.mp4").exists()


_GL_FRAMES = """
import sys
import numpy as np
from qwenkit.face import render
from qwenkit.face.mesh import BLENDSHAPES, make_face, pose
face = make_face(16)
weights = np.zeros((2, len(BLENDSHAPES)), np.float32)
weights[1, 0] = 1.0  # the jaw wide open
weights[1, 4] = 1.0  # and a left smile
frames = pose(face, weights)
gl = render.PyrenderRenderer(face.triangles, face.vertices, face.lip_idx, 96, backend=sys.argv[1])
pil = render.PILRenderer(face.triangles, face.vertices, face.lip_idx, 96)
np.save(sys.argv[2], np.stack([np.stack([gl.render(f), pil.render(f)]) for f in frames]))
gl.close()
"""


def _gl_backend_present(backend: str) -> bool:
    import ctypes.util
    import importlib.util

    library = {"egl": "EGL", "osmesa": "OSMesa"}[backend]
    return importlib.util.find_spec("pyrender") is not None and ctypes.util.find_library(library) is not None


def _silhouette(frame: np.ndarray) -> np.ndarray:
    return np.any(np.abs(frame.astype(int) - np.array(render._BACKGROUND)) > 8, axis=-1)


def _gl_frames(tmp_path, backend: str):
    """(2 frames, [gl, pil], H, W, 3) rendered in a subprocess (OpenGL's platform is fixed per process)."""
    import subprocess
    import sys

    out = tmp_path / "frames.npy"
    result = subprocess.run([sys.executable, "-c", _GL_FRAMES, backend, str(out)], capture_output=True, text=True,
                            timeout=120)
    return (np.load(out) if result.returncode == 0 else None), result.stderr


def _assert_same_face_as_pil(frames: np.ndarray) -> None:
    """Not blank, the same silhouette to one pixel (PIL fills a polygon's boundary pixels, OpenGL only pixels whose
    centre is inside), the same colours inside (median difference <= 2 of 255)."""
    from scipy.ndimage import binary_dilation

    for index, (gl, pil) in enumerate(frames):
        render.check_not_blank(gl, index)
        a, b = _silhouette(gl), _silhouette(pil)
        assert not (a & ~binary_dilation(b)).any() and not (b & ~binary_dilation(a)).any()
        assert (a & b).sum() / (a | b).sum() > 0.95
        inside = a & b
        assert np.median(np.abs(gl[inside].astype(int) - pil[inside])) <= 2
    mouth = (slice(50, 80), slice(28, 68))
    assert np.abs(frames[1, 0][mouth].astype(int) - frames[0, 0][mouth]).mean() > 5  # the open jaw shows


@pytest.mark.skipif(not _gl_backend_present("egl"), reason="needs pyrender and libEGL (apt-get install libegl1 "
                    "libegl-mesa0 libgl1-mesa-dri)")
def test_pyrender_egl_frame_matches_the_pil_silhouette(tmp_path):
    frames, stderr = _gl_frames(tmp_path, "egl")
    assert frames is not None, stderr
    _assert_same_face_as_pil(frames)


@pytest.mark.skipif(not _gl_backend_present("osmesa"), reason="needs pyrender and libOSMesa (apt-get install "
                    "libosmesa6)")
def test_pyrender_osmesa_matches_pil_or_names_the_pyopengl_it_needs(tmp_path):
    """pyrender pins PyOpenGL 3.1.0, whose OSMesa binding lacks what pyrender calls: then a clear error."""
    frames, stderr = _gl_frames(tmp_path, "osmesa")
    if frames is None:
        assert "RenderError" in stderr and "PyOpenGL >= 3.1.5" in stderr, stderr
    else:
        _assert_same_face_as_pil(frames)


@pytest.mark.parametrize("backend, library, package", [("egl", "EGL", "libegl1"), ("osmesa", "OSMesa", "libosmesa6")])
def test_a_missing_opengl_library_names_the_apt_package(monkeypatch, backend, library, package):
    import ctypes.util

    from qwenkit.face.mesh import make_face

    real = ctypes.util.find_library
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None if name == library else real(name))
    face = make_face(8)
    with pytest.raises(render.RenderError, match=f"{library} library.*apt-get install {package}"):
        render.make_renderer(backend, face.triangles, face.vertices)


def test_a_missing_pyrender_names_the_pip_package(monkeypatch):
    import ctypes.util
    import sys

    from qwenkit.face.mesh import make_face

    monkeypatch.setattr(ctypes.util, "find_library", lambda name: f"lib{name}.so")
    monkeypatch.setitem(sys.modules, "pyrender", None)
    monkeypatch.setenv("PYOPENGL_PLATFORM", "egl")
    face = make_face(8)
    with pytest.raises(render.RenderError, match="pip install pyrender"):
        render.make_renderer("egl", face.triangles, face.vertices)


def test_an_unknown_renderer_lists_the_choices():
    from qwenkit.face.mesh import make_face

    face = make_face(8)
    with pytest.raises(render.RenderError, match="pil, egl, osmesa"):
        render.make_renderer("vulkan", face.triangles, face.vertices)
