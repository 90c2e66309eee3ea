"""The shipped voice prompts and the spoken forms built from them.

`PromptLibrary` maps prompt names (`template-1` … `template-3`, `busy`, `voicemail-greeting`,
`mailbox-full`, `recording-notice`, `beep`, the `vm-*` menu parts, and the number clips
`digit-N`, `count-N`, `ordinal-N`, `month-N`, `day-N`, `hour-N`, `minute-N`) to 8 kHz 16-bit
PCM, cut into 20 ms frames or already G.711-encoded payloads, each cached after first use.
The names and texts come from `prompts/texts.toml`; the audio from `prompts/<name>.wav`.

Numbers are spoken from whole-word clips rather than digit by digit, because Japanese counters
change the number's sound (いっけん, ろっぷん, ついたち, よじ): every count of messages (1-20),
ordinal, month, day, hour and minute has its own clip. Phone numbers are read digit by digit.
The `spoken_*` functions return clip names; `PromptLibrary.join` makes one PCM stream of them.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Iterable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import PromptError
from .g711 import Codec, encode
from .wav import read_wav

__all__ = [
    "AFTER_HOURS_TEMPLATES",
    "FRAME_SAMPLES",
    "MAX_COUNT",
    "PromptLibrary",
    "default_library",
    "message_header",
    "split_frames",
    "spoken_count",
    "spoken_date",
    "spoken_digits",
    "spoken_ordinal",
    "spoken_time",
    "summary",
]

FRAME_SAMPLES = 160  # 20 ms at 8 kHz
MAX_COUNT = 20  # count-N / ordinal-N clips exist for 1..20 (a mailbox keeps at most 15)
AFTER_HOURS_TEMPLATES = ("template-1", "template-2", "template-3")
_PHONE_SEPARATORS = " -()"


class PromptLibrary:
    """Prompt audio from a directory holding `texts.toml` and one WAV per entry."""

    __slots__ = ("_frames", "_payloads", "_pcm", "directory", "entries")

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or Path(str(resources.files("media") / "prompts"))
        with (self.directory / "texts.toml").open("rb") as fh:
            self.entries: dict[str, dict[str, Any]] = tomllib.load(fh)
        self._pcm: dict[str, bytes] = {}
        self._frames: dict[tuple[str, int], tuple[bytes, ...]] = {}
        self._payloads: dict[tuple[str, Codec, int], tuple[bytes, ...]] = {}

    def names(self) -> frozenset[str]:
        return frozenset(self.entries)

    def text(self, name: str) -> str:
        """The prompt's wording (for logs, the API and people checking the audio)."""
        return str(self._entry(name)["text"])

    def pcm(self, name: str) -> bytes:
        """The whole prompt as 16-bit little-endian PCM at 8 kHz."""
        if name not in self._pcm:
            self._entry(name)
            self._pcm[name] = read_wav(self.directory / f"{name}.wav")
        return self._pcm[name]

    def seconds(self, name: str) -> float:
        return len(self.pcm(name)) / 2 / 8000

    def frames(self, name: str, *, frame_samples: int = FRAME_SAMPLES) -> tuple[bytes, ...]:
        """PCM frames of `frame_samples`; the last one padded with silence."""
        key = (name, frame_samples)
        if key not in self._frames:
            self._frames[key] = split_frames(self.pcm(name), frame_samples)
        return self._frames[key]

    def payloads(
        self, name: str, codec: Codec, *, frame_samples: int = FRAME_SAMPLES
    ) -> tuple[bytes, ...]:
        """RTP payloads of the prompt, encoded once per codec and frame size."""
        key = (name, codec, frame_samples)
        if key not in self._payloads:
            frames = self.frames(name, frame_samples=frame_samples)
            self._payloads[key] = tuple(encode(codec, f) for f in frames)
        return self._payloads[key]

    def join(self, names: Iterable[str], *, gap: float = 0.0) -> bytes:
        """One PCM stream of several clips, with `gap` seconds of silence between them."""
        pause = bytes(2 * round(gap * 8000))
        return pause.join(self.pcm(name) for name in names)

    def _entry(self, name: str) -> dict[str, Any]:
        try:
            return self.entries[name]
        except KeyError:
            raise PromptError(f"no prompt called {name!r}") from None


def split_frames(pcm: bytes, frame_samples: int = FRAME_SAMPLES) -> tuple[bytes, ...]:
    """Cut PCM into frames of `frame_samples` 16-bit samples, padding the last with zeros."""
    size = 2 * frame_samples
    if frame_samples <= 0:
        raise PromptError(f"frame of {frame_samples} samples", error_id="prompt-bad-frame")
    return tuple(pcm[i : i + size].ljust(size, b"\x00") for i in range(0, len(pcm), size))


@cache
def default_library() -> PromptLibrary:
    """The prompts shipped in the package (loaded once per process)."""
    return PromptLibrary()


# --------------------------------------------------------------------------- spoken forms
def _in_range(what: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise PromptError(f"cannot say {what} {value}", error_id="prompt-unsayable")


def spoken_count(n: int) -> tuple[str, ...]:
    """「N件」."""
    _in_range("count", n, 1, MAX_COUNT)
    return (f"count-{n}",)


def spoken_ordinal(n: int) -> tuple[str, ...]:
    """「N件目」."""
    _in_range("ordinal", n, 1, MAX_COUNT)
    return (f"ordinal-{n}",)


def spoken_date(month: int, day: int) -> tuple[str, ...]:
    """「M月D日」."""
    _in_range("month", month, 1, 12)
    _in_range("day", day, 1, 31)
    return (f"month-{month}", f"day-{day}")


def spoken_time(hour: int, minute: int) -> tuple[str, ...]:
    """「H時M分」 on the 24-hour clock (「14時5分」); 「H時」 alone on the hour."""
    _in_range("hour", hour, 0, 23)
    _in_range("minute", minute, 0, 59)
    return (f"hour-{hour}",) if minute == 0 else (f"hour-{hour}", f"minute-{minute}")


def spoken_digits(number: str) -> tuple[str, ...]:
    """A phone number read digit by digit (「ゼロ、サン、…」); spaces, '-' and () skipped."""
    names = []
    for ch in number:
        if ch.isascii() and ch.isdigit():
            names.append(f"digit-{ch}")
        elif ch not in _PHONE_SEPARATORS:
            raise PromptError(f"cannot read {ch!r} in a phone number", error_id="prompt-unsayable")
    if not names:
        raise PromptError("phone number without digits", error_id="prompt-unsayable")
    return tuple(names)


def summary(new: int, saved: int = 0) -> tuple[str, ...]:
    """「新しいメッセージがN件あります。保存されたメッセージがM件あります。」 or
    「メッセージはありません。」."""
    if new == 0 and saved == 0:
        return ("vm-no-messages",)
    parts: tuple[str, ...] = ()
    if new:
        parts += ("vm-new-prefix", *spoken_count(new), "vm-count-suffix")
    if saved:
        parts += ("vm-saved-prefix", *spoken_count(saved), "vm-count-suffix")
    return parts


def message_header(index: int, received: dt.datetime, caller: str | None) -> tuple[str, ...]:
    """「N件目のメッセージです。受信日時は、M月D日H時M分です。発信者番号は、…です。」

    `received` is in the tenant's local time; `caller` is the number as the tenant dials it
    (national form, e.g. 0312345678), or None when it was withheld.
    """
    parts = (*spoken_ordinal(index), "vm-message-of", "vm-received")
    parts += (
        *spoken_date(received.month, received.day),
        *spoken_time(received.hour, received.minute),
    )
    parts += ("vm-desu",)
    if caller is None:
        return (*parts, "vm-caller-unknown")
    return (*parts, "vm-caller", *spoken_digits(caller), "vm-desu")
