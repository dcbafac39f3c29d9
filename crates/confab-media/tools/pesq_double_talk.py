#!/usr/bin/env python3
"""PESQ (ITU-T P.862, wide band) of the near end in double talk, on the WAV files that
`cargo test -p confab-media --lib write_double_talk_wavs -- --ignored` writes (sets: synthetic, espeakng).

    pip install numpy pesq
    python3 crates/confab-media/tools/pesq_double_talk.py [DIR]

For each fixture set (synthetic, espeak) it scores, against the clean near end (`ref`): the
microphone with the echo left in (`mic`), the double-talk output with everything on (`dt_all`)
and with echo cancellation only (`dt_aec`), the near end alone through the same processing while
the far end is rendered (`alone_*`: no echo in the microphone, but the far end talking), and with
a silent far end (`solo_*`).
"""
import glob
import os
import sys
import tempfile
import wave

import numpy as np
from pesq import pesq


def read(path):
    with wave.open(path) as w:
        return w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CONFAB_AUDIO_OUT", tempfile.gettempdir())
    sets = sorted({os.path.basename(p).split("-")[2] for p in glob.glob(os.path.join(d, "confab-dt-*-ref.wav"))})
    if not sets:
        sys.exit(f"no confab-dt-*-ref.wav in {d}: run the write_double_talk_wavs test first")
    for s in sets:
        rate, ref = read(os.path.join(d, f"confab-dt-{s}-ref.wav"))
        for what in ["mic", "dt_all", "alone_all", "solo_all", "dt_aec", "alone_aec", "solo_aec"]:
            _, deg = read(os.path.join(d, f"confab-dt-{s}-{what}.wav"))
            n = min(len(ref), len(deg))
            print(f"{s:10} {what:10} PESQ-WB {pesq(rate, ref[:n], deg[:n], 'wb'):.2f}")


if __name__ == "__main__":
    main()
