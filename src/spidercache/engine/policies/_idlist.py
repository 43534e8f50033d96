"""Doubly linked lists threaded through ``int32`` link arrays.

ARC's cold paths (``remove``, ``resize``) use these on its slot pool; the hot
access kernels inline the same steps on local variables instead (see
``_slotlist`` for why). Several lists share one pair of link arrays (a node is
on at most one list at a time); list ``L`` keeps its head at ``s[L]`` and its tail at ``s[L + 1]`` in
the policy's scalar array. Head = most recently pushed; the tail is the oldest.
"""

from __future__ import annotations

import numba as nb

NIL = -1


@nb.njit(cache=True, inline="always")
def push_head(i, L, prev, nxt, s):
    h = s[L]
    prev[i] = NIL
    nxt[i] = h
    if h != NIL:
        prev[h] = i
    else:
        s[L + 1] = i
    s[L] = i


@nb.njit(cache=True, inline="always")
def unlink(i, L, prev, nxt, s):
    p = prev[i]
    n = nxt[i]
    if p != NIL:
        nxt[p] = n
    else:
        s[L] = n
    if n != NIL:
        prev[n] = p
    else:
        s[L + 1] = p
    prev[i] = NIL
    nxt[i] = NIL


@nb.njit(cache=True, inline="always")
def pop_tail(L, prev, nxt, s):
    i = s[L + 1]
    unlink(i, L, prev, nxt, s)
    return i
