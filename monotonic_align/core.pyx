# cython: boundscheck=False, wraparound=False, cdivision=True
"""Monotonic Alignment Search kernel (Kim et al. 2020, Glow-TTS Alg. 1; VITS layout).

The dynamic programme runs in place on ``value`` and writes a 0/1 ``path``.
Both kernels are ``noexcept nogil``: no Python object is touched inside the loops.
"""

cimport cython
from cython.parallel import prange


cdef void maximum_path_each(int[:, ::1] path, float[:, ::1] value, int t_frames, int t_text,
                            float max_neg_val=-1e9) noexcept nogil:
    cdef int y, x
    cdef float v_prev, v_cur
    cdef int index = t_text - 1

    for y in range(t_frames):
        for x in range(max(0, t_text + y - t_frames), min(t_text, y + 1)):
            if x == y:
                v_cur = max_neg_val
            else:
                v_cur = value[y - 1, x]
            if x == 0:
                if y == 0:
                    v_prev = 0.0
                else:
                    v_prev = max_neg_val
            else:
                v_prev = value[y - 1, x - 1]
            value[y, x] += max(v_prev, v_cur)

    for y in range(t_frames - 1, -1, -1):
        path[y, index] = 1
        if index != 0 and (index == y or value[y - 1, index] < value[y - 1, index - 1]):
            index = index - 1


cpdef void maximum_path_batch(int[:, :, ::1] paths, float[:, :, ::1] values,
                              int[::1] t_frames, int[::1] t_text) noexcept nogil:
    """Run MAS over a batch. ``values`` [B, T_frames, T_text] is overwritten."""
    cdef int b = paths.shape[0]
    cdef int i
    for i in range(b):
        maximum_path_each(paths[i], values[i], t_frames[i], t_text[i])
