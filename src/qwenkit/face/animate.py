"""``qwenkit face animate``: speech (+ a reference clip of the speaker) -> vertices -> MP4 with the audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qwenkit.face.data import FaceSequence, read_wav
from qwenkit.face.errors import FaceDataError, RenderError
from qwenkit.face.train import FaceKit, Prepared, load_kit, reference_clip


def _load_npy(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise FaceDataError(f"{what} file {str(path)!r} does not exist")
    try:
        return np.load(path).astype(np.float32)
    except ValueError as exc:
        raise FaceDataError(f"{what} file {str(path)!r} is not a .npy array: {exc}") from None


def _vertices(array: np.ndarray, num_vertices: int, path: Path) -> np.ndarray:
    if array.ndim == 2 and array.shape[1] == num_vertices * 3:
        return array.reshape(len(array), num_vertices, 3)
    if array.ndim == 3 and array.shape[1:] == (num_vertices, 3):
        return array
    raise FaceDataError(f"{str(path)!r}: shape {array.shape}, expected (T, {num_vertices}, 3) or "
                        f"(T, {num_vertices * 3}) for this model's {num_vertices} vertices")


def load_triangles(path: Path) -> np.ndarray:
    if path.suffix == ".obj":
        from qwenkit.face.datasets import read_obj

        return read_obj(path)[1]
    return _load_npy(path, "triangles").astype(np.int64)


def conditioning_clip(kit: FaceKit, reference: Path, reference_audio: Path | None, template: np.ndarray):
    """The (motion, audio) reference clip of a style-encoder model from user files."""
    clip = _vertices(_load_npy(reference, "reference clip"), kit.num_vertices, reference)
    motion = ((clip - template[None]) / kit.scale).reshape(len(clip), -1)
    if kit.model.config.enhance:
        if reference_audio is None:
            raise FaceDataError("this model enhances the style with the reference clip's speech; pass "
                                "--reference-audio CLIP.wav")
        audio = read_wav(reference_audio, kit.sample_rate)
    else:
        audio = np.zeros(int(len(clip) / kit.fps * kit.sample_rate) + 1, np.float32)
    sequence = FaceSequence("reference", "clip", clip, template, audio, kit.sample_rate, kit.fps)
    return reference_clip(Prepared(sequence, motion, -1), kit.config.reference_frames)


def animate_to_mp4(model: Path, audio: Path, output: Path, *, reference: Path | None = None,
                   reference_audio: Path | None = None, template: Path | None = None, speaker: int = 0,
                   triangles: Path | None = None, size: int = 256, renderer: str = "pil") -> tuple[Path, int]:
    from qwenkit.face.render import RENDERERS, render_video

    if renderer not in RENDERERS:
        raise RenderError(f"--renderer {renderer!r} is not one of {', '.join(RENDERERS)}")
    kit = load_kit(model)
    if not Path(audio).is_file():
        raise FaceDataError(f"audio file {str(audio)!r} does not exist")
    speech = read_wav(Path(audio), kit.sample_rate)
    frames = max(2, int(round(len(speech) / kit.sample_rate * kit.fps)))
    triangle_path = triangles or Path(model) / "triangles.npy"
    if not triangle_path.is_file():
        raise FaceDataError(f"no triangles: {str(triangle_path)!r} does not exist; pass --triangles faces.npy or "
                            "a template .obj")
    faces = load_triangles(triangle_path)
    clip = None
    if kit.model.config.style == "encoder":
        if reference is None:
            raise FaceDataError("this model is conditioned on a reference motion clip; pass --reference CLIP.npy")
        if template is not None:
            neutral = _vertices(_load_npy(template, "template")[None], kit.num_vertices, template)[0]
        else:
            neutral = _vertices(_load_npy(reference, "reference clip"), kit.num_vertices, reference)[0]
        clip = conditioning_clip(kit, reference, reference_audio, neutral)
    else:
        if template is None:
            raise FaceDataError("pass --template TEMPLATE.npy (V, 3): the neutral face to animate")
        neutral = _vertices(_load_npy(template, "template")[None], kit.num_vertices, template)[0]
        if not 0 <= speaker < len(kit.speakers):
            raise FaceDataError(f"--speaker {speaker} is not a training speaker (0..{len(kit.speakers) - 1})")
    vertices = kit.predict(speech, frames, neutral, reference_clip_frames=clip, speaker=speaker)
    path = render_video([vertices], faces, neutral, output, kit.fps, audio=speech, sample_rate=kit.sample_rate,
                        lip_idx=kit.lip_idx, size=size, renderer=renderer)
    return path, frames
