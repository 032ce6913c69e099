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
