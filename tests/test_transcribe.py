"""Whisper tiny.en transcribes spoken digits from FSDD offline (faster-whisper, packaged weights)."""

from __future__ import annotations

import pytest
import soundfile as sf

from tessera import zoo

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.mark.realdata
@pytest.mark.parametrize("file", ["3_jackson_0.wav", "7_theo_1.wav"])
def test_transcribes_a_spoken_digit(shared_data, file):
    if not zoo.is_installed("transcribe"):
        pytest.skip(zoo.CATALOG["transcribe"].install)
    from tessera.transcribe import transcribe

    wave, sr = sf.read(shared_data / "fsdd" / "recordings" / file, dtype="float32")  # 8 kHz: resampled inside
    text = transcribe(wave, sr).lower().strip(" .!?")
    digit = int(file[0])
    assert text in (WORDS[digit], str(digit)), text


@pytest.mark.realdata
def test_a_vocabulary_prompt_tells_whisper_the_domain(shared_data):
    """'7_yweweler_4.wav' comes out as 'Evan.' unprompted; a digit vocabulary as initial prompt makes it 'Seven.'."""
    if not zoo.is_installed("transcribe"):
        pytest.skip(zoo.CATALOG["transcribe"].install)
    from tessera.transcribe import transcribe

    wave, sr = sf.read(shared_data / "fsdd" / "recordings" / "7_yweweler_4.wav", dtype="float32")
    vocabulary = "Counting: " + ", ".join(WORDS) + "."
    assert transcribe(wave, sr, beam_size=1).lower().strip(" .!?") not in ("seven", "7")
    assert transcribe(wave, sr, beam_size=1, prompt=vocabulary).lower().strip(" .!?") in ("seven", "7")
