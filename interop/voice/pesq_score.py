"""ITU-T P.862 wideband PESQ of a degraded recording against its reference (both 16 kHz
mono 16-bit WAV), through PyPI `pesq`. Prints the score (MOS-LQO)."""
import sys
import wave

import numpy as np
from pesq import pesq


def read(path):
    with wave.open(path, "rb") as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2, path
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32)


ref, deg = read(sys.argv[1]), read(sys.argv[2])
# The same length: silence added at the end of the shorter (P.862 finds the delay).
n = max(len(ref), len(deg))
ref, deg = np.pad(ref, (0, n - len(ref))), np.pad(deg, (0, n - len(deg)))
print(f"{pesq(16000, ref, deg, 'wb'):.3f}")
