#!/usr/bin/env python3
"""Generate the shipped voice prompts (media/prompts/*.wav) from media/prompts/texts.toml.

Development tool, not a runtime dependency. Speech comes from pyopenjtalk-plus (MIT) with its
bundled "Mei" voice (CC BY 3.0, Nagoya Institute of Technology); tones are generated here.
Every file is written as 8 kHz, 16-bit, mono WAV and then checked: format, not silent (RMS),
and a duration plausible for the text's mora count. A person still has to listen to them.

    scripts/gen-prompts.py                 # generate every prompt (re-uses a venv, see below)
    scripts/gen-prompts.py busy beep       # only these
    scripts/gen-prompts.py --check         # check the committed files, synthesise nothing

pyopenjtalk-plus is not installed into the project's venv: when it cannot be imported, this
script creates a throwaway venv (default /tmp/softswitch-prompts-venv), installs
`pyopenjtalk-plus soxr numpy` there and re-runs itself with that interpreter.
"""

from __future__ import annotations

import argparse
import math
import os
import struct
import subprocess
import sys
import tomllib
import venv
import wave
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ROOT / "media" / "prompts"
RATE = 8000
PEAK = 0.7  # peak level after normalisation (about -3 dBFS): equal loudness when clips join
PAD_S = 0.06  # silence kept before and after the trimmed speech
SPEED = 1.1  # the voice's default pace is slow for a telephone announcement
MIN_RMS = 300  # 16-bit units; speech normalised as above lands well above 2000
DEFAULT_VENV = Path("/tmp/softswitch-prompts-venv")


def load_texts() -> dict[str, dict[str, Any]]:
    with (PROMPTS / "texts.toml").open("rb") as fh:
        return tomllib.load(fh)


# ------------------------------------------------------------------ synthesis (needs the venv)
def synthesise(say: str) -> list[int]:
    """Speech for `say` as 8 kHz int16 samples: TTS at 48 kHz, trim, resample, normalise."""
    import numpy as np
    import pyopenjtalk
    import soxr

    audio, rate = pyopenjtalk.tts(say, speed=SPEED)
    audio = np.asarray(audio, dtype=np.float64) / 32768.0
    audio = _trim(audio, rate)
    audio = soxr.resample(audio, rate, RATE, quality="VHQ")
    audio = audio * (PEAK / max(float(np.max(np.abs(audio))), 1e-9))
    return [int(v) for v in np.rint(np.clip(audio, -1.0, 1.0) * 32767)]


def _trim(audio: Any, rate: int) -> Any:
    import numpy as np

    loud = np.flatnonzero(np.abs(audio) > 0.02)
    if loud.size == 0:
        raise SystemExit("synthesiser returned silence")
    pad = int(PAD_S * rate)
    return audio[max(0, loud[0] - pad) : loud[-1] + pad]


def tone(frequency: float, seconds: float, repeat: int = 1) -> list[int]:
    """A sine burst (10 ms raised-cosine ramps), repeated with equal gaps, at -6 dBFS."""
    count = int(seconds * RATE)
    ramp = int(0.01 * RATE)
    burst = []
    for n in range(count):
        gain = min(1.0, n / ramp, (count - 1 - n) / ramp)
        gain = 0.5 - 0.5 * math.cos(math.pi * max(gain, 0.0))
        burst.append(int(0.5 * 32767 * gain * math.sin(2 * math.pi * frequency * n / RATE)))
    gap = [0] * count
    out: list[int] = []
    for i in range(repeat):
        out += burst + (gap if i < repeat - 1 else [])
    return out


def write_wav(path: Path, samples: list[int]) -> None:
    tmp = path.with_suffix(".tmp")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(struct.pack(f"<{len(samples)}h", *samples))
    tmp.replace(path)


# ------------------------------------------------------------------ checks (stdlib only)
def mora_count(text: str) -> int:
    """Mora of a kana reading: every kana but the small ones (ゃゅょぁぃぅぇぉ) counts."""
    small = set("ゃゅょぁぃぅぇぉャュョァィゥェォ")
    return sum(1 for ch in text if ("\u3040" <= ch <= "\u30ff") and ch not in small)


def check(name: str, entry: dict[str, Any]) -> str:
    """Verify one WAV; returns a one-line report or raises SystemExit."""
    path = PROMPTS / f"{name}.wav"
    with wave.open(str(path), "rb") as w:
        fmt = (w.getnchannels(), w.getsampwidth(), w.getframerate())
        frames = w.readframes(w.getnframes())
    if fmt != (1, 2, RATE):
        raise SystemExit(f"{name}: format {fmt}, want mono 16-bit 8000 Hz")
    samples = struct.unpack(f"<{len(frames) // 2}h", frames)
    seconds = len(samples) / RATE
    rms = math.sqrt(sum(s * s for s in samples) / max(len(samples), 1))
    if rms < MIN_RMS:
        raise SystemExit(f"{name}: RMS {rms:.0f} below {MIN_RMS}: silent?")
    low, high = expected_seconds(entry)
    if not low <= seconds <= high:
        raise SystemExit(f"{name}: {seconds:.2f} s outside {low:.2f}..{high:.2f} s")
    return f"{name:20s} {seconds:5.2f} s  rms {rms:5.0f}  {entry['text']}"


def expected_seconds(entry: dict[str, Any]) -> tuple[float, float]:
    """Plausible duration: 5..14 mora per second of the spoken reading, plus pauses."""
    if entry["kind"] == "tone":
        total = entry["seconds"] * (2 * entry.get("repeat", 1) - 1)
        return total - 0.01, total + 0.01
    mora = mora_count(entry["say"])
    pauses = entry["say"].count("、") + entry["say"].count("。")
    return mora / 14, mora / 5 + 0.4 * pauses + 2 * PAD_S + 0.3


# ------------------------------------------------------------------ driver
def ensure_synthesiser(venv_dir: Path) -> None:
    """Re-run under a throwaway venv with pyopenjtalk-plus when it is not importable here."""
    try:
        import pyopenjtalk  # noqa: F401
        import soxr  # noqa: F401
    except ImportError as exc:
        python = venv_dir / "bin" / "python"
        if not python.exists():
            venv.create(venv_dir, with_pip=True)
            pip = [str(python), "-m", "pip", "install", "-q"]
            subprocess.run([*pip, "pyopenjtalk-plus", "soxr", "numpy"], check=True)
        if Path(sys.executable) == python:
            raise SystemExit(f"pyopenjtalk-plus still not importable in {venv_dir}") from exc
        os.execv(str(python), [str(python), *sys.argv])


def generate(name: str, entry: dict[str, Any]) -> None:
    if entry["kind"] == "tone":
        samples = tone(entry["frequency"], entry["seconds"], entry.get("repeat", 1))
    else:
        samples = synthesise(entry["say"])
    write_wav(PROMPTS / f"{name}.wav", samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="prompts to generate (default: all)")
    parser.add_argument("--check", action="store_true", help="only check the existing files")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--readings", action="store_true", help="print the synthesiser's kana")
    args = parser.parse_args()
    texts = load_texts()
    names = args.names or list(texts)
    unknown = [n for n in names if n not in texts]
    if unknown:
        raise SystemExit(f"unknown prompt(s): {', '.join(unknown)}")
    if not args.check:
        ensure_synthesiser(args.venv)
        for name in names:
            generate(name, texts[name])
    for name in names:
        print(check(name, texts[name]))
        if args.readings and texts[name]["kind"] == "tts":
            import pyopenjtalk

            print("    reading:", pyopenjtalk.g2p(texts[name]["say"], kana=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
