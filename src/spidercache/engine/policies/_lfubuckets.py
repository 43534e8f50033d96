"""LFU's bucket helpers, its byte-sized kernel and remove / shrink (cold paths; the hot
object-count kernel lives in ``lfu``). See ``lfu`` for the state layout.
"""

from __future__ import annotations

import numba as nb

NIL = -1
FIRST, FREE, HIGH = 2, 3, 4


@nb.njit(cache=True, inline="always")
def _drop_slot(x, where, sid, sprev, snext, snode, nhead, ntail, nprev, nnext, s):
    """Take the id in slot ``x`` out of the cache; move the last slot into the hole."""
    a = snode[x]
    p = sprev[x]
    q = snext[x]
    if p != NIL:
        snext[p] = q
    else:
        nhead[a] = q
    if q != NIL:
        sprev[q] = p
    else:
        ntail[a] = p
    if nhead[a] == NIL:  # bucket empty: unlink and free its node
        pa = nprev[a]
        b = nnext[a]
        if pa != NIL:
            nnext[pa] = b
        else:
            s[FIRST] = b
        if b != NIL:
            nprev[b] = pa
        nnext[a] = s[FREE]
        s[FREE] = a
    v = sid[x]
    where[v] = 0
    last = s[1] - 1
    s[1] = last
    if x != last:
        j = sid[last]
        sid[x] = j
        where[j] = x + 1
        c = snode[last]
        p = sprev[last]
        q = snext[last]
        snode[x] = c
        sprev[x] = p
        snext[x] = q
        if p != NIL:
            snext[p] = x
        else:
            nhead[c] = x
        if q != NIL:
            sprev[q] = x
        else:
            ntail[c] = x
    return v


@nb.njit(cache=True, inline="always")
def _new_node(f, prev, nxt, nfreq, nhead, ntail, nprev, nnext, s):
    """A bucket node for count ``f`` between buckets ``prev`` and ``nxt`` (either may be NIL)."""
    if s[FREE] != NIL:
        a = s[FREE]
        s[FREE] = nnext[a]
    else:
        a = s[HIGH]
        s[HIGH] = a + 1
    nfreq[a] = f
    nhead[a] = NIL
    ntail[a] = NIL
    nprev[a] = prev
    nnext[a] = nxt
    if prev != NIL:
        nnext[prev] = a
    else:
        s[FIRST] = a
    if nxt != NIL:
        nprev[nxt] = a
    return a


@nb.njit(cache=True, inline="always")
def _append(x, a, sprev, snext, snode, nhead, ntail):
    t = ntail[a]
    sprev[x] = t
    snext[x] = NIL
    if t != NIL:
        snext[t] = x
    else:
        nhead[a] = x
    ntail[a] = x
    snode[x] = a


@nb.njit(cache=True)
def _lfu_access_sized(
    ids,
    sizes,
    admit,
    use_admit,
    hits,
    evicted,
    record,
    where,
    sid,
    sprev,
    snext,
    snode,
    nfreq,
    nhead,
    ntail,
    nprev,
    nnext,
    s,
    osize,
    used,
):
    # Byte-sized LFU (libCacheSim's definition, see ``base``): a miss evicts the head
    # of the lowest bucket until the newcomer fits. Cold next to the object-count
    # kernel, so it works on the scalar array with the shared helpers.
    cap = s[0]
    inuse = used[0]  # in a local through the batch: a store to ``used`` would force reloads
    n_ev = 0
    n_adm = 0
    n_rej = 0
    for k in range(ids.size):
        i = ids[k]
        z = sizes[k]
        w = where[i]
        if w > 0:
            hits[k] = True
            x = w - 1
            a = snode[x]
            f = nfreq[a] + 1
            b = nnext[a]
            if b != NIL and nfreq[b] == f:
                target = b
            else:
                target = _new_node(f, a, b, nfreq, nhead, ntail, nprev, nnext, s)
            # out of bucket a (freed when empty), into the target's tail
            p = sprev[x]
            q = snext[x]
            if p != NIL:
                snext[p] = q
            else:
                nhead[a] = q
            if q != NIL:
                sprev[q] = p
            else:
                ntail[a] = p
            if nhead[a] == NIL:
                pa = nprev[a]
                if pa != NIL:
                    nnext[pa] = target
                else:
                    s[FIRST] = target
                nprev[target] = pa
                nnext[a] = s[FREE]
                s[FREE] = a
            _append(x, target, sprev, snext, snode, nhead, ntail)
            continue
        hits[k] = False
        if (use_admit and not admit[k]) or z > cap:
            n_rej += 1
            continue
        n_adm += 1
        while inuse + z > cap:
            x = nhead[s[FIRST]]
            inuse -= osize[sid[x]]
            v = _drop_slot(x, where, sid, sprev, snext, snode, nhead, ntail, nprev, nnext, s)
            if record:
                evicted[n_ev] = v
            n_ev += 1
        x = s[1]
        s[1] = x + 1
        sid[x] = i
        where[i] = x + 1
        osize[i] = z
        inuse += z
        first = s[FIRST]
        if first != NIL and nfreq[first] == 1:
            target = first
        else:
            target = _new_node(1, NIL, first, nfreq, nhead, ntail, nprev, nnext, s)
        _append(x, target, sprev, snext, snode, nhead, ntail)
    used[0] = inuse
    return n_ev, n_adm, n_rej


@nb.njit(cache=True)
def _lfu_remove(
    ids, where, sid, sprev, snext, snode, nfreq, nhead, ntail, nprev, nnext, s, osize, used, sized
):
    n = 0
    for k in range(ids.size):
        w = where[ids[k]]
        if w > 0:
            if sized:
                used[0] -= osize[ids[k]]
            _drop_slot(w - 1, where, sid, sprev, snext, snode, nhead, ntail, nprev, nnext, s)
            n += 1
    return n


@nb.njit(cache=True)
def _lfu_shrink(
    evicted, where, sid, sprev, snext, snode, nfreq, nhead, ntail, nprev, nnext, s, osize, used, sized
):
    n = 0
    while s[1] > 0 and (used[0] if sized else s[1]) > s[0]:
        x = nhead[s[FIRST]]
        if sized:
            used[0] -= osize[sid[x]]
        evicted[n] = _drop_slot(x, where, sid, sprev, snext, snode, nhead, ntail, nprev, nnext, s)
        n += 1
    return n
