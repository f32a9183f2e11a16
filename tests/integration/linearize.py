"""tests/integration/linearize.py — a linearizability checker for registers.

The history is a list of Op: one operation of one client thread on one key,
with the time it was invoked and the time it returned (time.monotonic in the
client thread). Keys are independent registers, so each key is checked on
its own (P-compositionality) and the history is linearizable iff every key's
is.

The register's operations, with values unique across the whole history:

    put(v)        res "ok" (applied) or "unknown" (may have applied, at any
                  point after its invocation, or never: a timeout, a dropped
                  connection, a 500 other than "No cluster leader")
    cas(old, new) res "ok" (state was old, is now new), "fail" (state was
                  not old, nothing changed) or "unknown". A client reads the
                  value and its ModifyIndex and CASes on that index; since
                  every written value is unique, "index still current" is
                  exactly "value still old". old is None for "absent".
    read()        res the value read, None for absent (404)

A lock key (docs/SESSIONS.md) is a register holding its holder's session
(None: free), with every session's ID as the value it writes:

    acquire(s)    res "ok" (the key was free or held by s; now s holds it),
                  "fail" (another session held it) or "unknown"
    release(s)    res "ok" (s held it; now free), "fail" (s did not hold
                  it) or "unknown"
    read()        res the holder read (the Session field), None for none

(The sessions of a lock history have no lock delay and are never ended, so
nothing else can refuse an acquire.)

A put that surely did not apply (500 "No cluster leader") and a read that
failed are left out of the history by the caller: they did nothing.

The search is Wing & Gong's, with the memoisation of Lowe ("Testing for
linearizability", 2017) that Porcupine uses too: the invocations and returns
are one list in time order; the search repeatedly takes an invocation whose
operation may come next (no return before it in the list, i.e. no operation
that returned before it was invoked is still unplaced), applies it to the
model, and removes both its entries; it backtracks when it meets a return
(that operation cannot be placed any later). A (set of placed operations,
state) pair that was seen before is not explored again. An operation whose
outcome is unknown gets return time +inf: it may be placed anywhere after its
invocation, and placing it at the very end is the same as "never".

The search is bounded (steps and seconds per key); an exhausted bound answers
None (undecided), never True. A violation is reported with a minimal window:
operations are removed from the key's history while it stays
non-linearizable, but only removals that keep a linearizable history
linearizable (reads, failed CAS, and writes whose value no remaining
operation observes), so the window is a witness of the whole history's
violation.
"""
import time

INF = float("inf")


class Op:
    __slots__ = ("proc", "key", "kind", "arg", "res", "call", "ret", "agent")

    def __init__(self, proc, key, kind, arg, res, call, ret, agent=""):
        assert kind in ("put", "cas", "read", "acquire", "release")
        if kind in ("acquire", "release"):
            assert res in ("ok", "fail", "unknown")
        if kind == "put":
            assert res in ("ok", "unknown")
        if kind == "cas":
            assert res in ("ok", "fail", "unknown")
            assert isinstance(arg, tuple) and len(arg) == 2
        self.proc, self.key, self.kind, self.arg, self.res = proc, key, kind, arg, res
        self.call = call
        self.ret = INF if res == "unknown" else ret
        self.agent = agent

    def written(self):
        """The value this op may write, or None if it never writes."""
        if self.kind == "put":
            return self.arg
        if self.kind == "cas" and self.res in ("ok", "unknown"):
            return self.arg[1]
        return None

    def fmt(self, t0=0.0):
        if self.kind == "put":
            what = "put(%r) -> %s" % (self.arg, self.res)
        elif self.kind == "cas":
            what = "cas(%r -> %r) -> %s" % (self.arg[0], self.arg[1], self.res)
        elif self.kind in ("acquire", "release"):
            what = "%s(%r) -> %s" % (self.kind, self.arg, self.res)
        else:
            what = "read() -> %r" % (self.res,)
        end = "inf" if self.ret == INF else "%.4f" % (self.ret - t0)
        return "[%.4f .. %s] p%s %s%s" % (self.call - t0, end, self.proc,
                                          (self.agent + " ") if self.agent else "", what)


def step(state, op):
    """(allowed, new state) of op applied to the register holding state."""
    if op.kind == "read":
        return op.res == state, state
    if op.kind == "put":
        return True, op.arg
    if op.kind in ("acquire", "release"):
        s = op.arg
        can = state in (None, s) if op.kind == "acquire" else state == s
        after = s if op.kind == "acquire" else None
        if op.res == "ok":
            return can, after
        if op.res == "fail":
            return not can, state
        return True, (after if can else state)  # unknown: applies iff it can
    old, new = op.arg
    if op.res == "ok":
        return state == old, new
    if op.res == "fail":
        return state != old, state
    return True, (new if state == old else state)  # unknown: applies iff it can


class _Entry:
    __slots__ = ("op", "idx", "is_call", "match", "prev", "next")

    def __init__(self, op, idx, is_call):
        self.op, self.idx, self.is_call = op, idx, is_call
        self.match = self.prev = self.next = None


def _build(ops):
    ev = []
    for i, op in enumerate(ops):
        c, r = _Entry(op, i, True), _Entry(op, i, False)
        c.match = r
        # at equal times an invocation sorts before a return: more overlap,
        # never a false violation
        ev.append((op.call, 0, i, c))
        ev.append((op.ret, 1, i, r))
    ev.sort(key=lambda t: (t[0], t[1], t[2]))
    head = _Entry(None, -1, False)
    prev = head
    for _, _, _, e in ev:
        prev.next, e.prev = e, prev
        prev = e
    return head


def _lift(e):
    e.prev.next = e.next
    e.next.prev = e.prev  # a call's next is never None: its return follows
    m = e.match
    m.prev.next = m.next
    if m.next is not None:
        m.next.prev = m.prev


def _unlift(e):
    m = e.match
    m.prev.next = m
    if m.next is not None:
        m.next.prev = m
    e.prev.next = e
    e.next.prev = e


def check_register(ops, init=None, max_steps=2000000, max_seconds=20.0):
    """Check one register's history. Returns a dict: ok (True, False, or None
    when a bound ran out), steps, seconds, and when ok is False: order (the
    longest prefix of a linearization found) and blocked (the operation that
    could be placed after no such prefix)."""
    t_start = time.monotonic()
    n = len(ops)
    res = {"ok": True, "steps": 0, "seconds": 0.0, "ops": n}
    if n == 0:
        return res
    head = _build(ops)
    seen = set()
    stack = []  # (entry, state before it)
    state, placed = init, 0
    best, blocked = [], None
    steps = 0
    entry = head.next
    while head.next is not None:
        steps += 1
        if steps > max_steps or (steps & 1023 == 0 and time.monotonic() - t_start > max_seconds):
            res.update(ok=None, steps=steps, seconds=time.monotonic() - t_start)
            return res
        if entry.is_call:
            ok, new_state = step(state, entry.op)
            if ok:
                new_placed = placed | (1 << entry.idx)
                memo = (new_placed, new_state)
                if memo not in seen:
                    seen.add(memo)
                    stack.append((entry, state))
                    state, placed = new_state, new_placed
                    _lift(entry)
                    if len(stack) > len(best):
                        best = [e.op for e, _ in stack]
                        blocked = None
                    entry = head.next
                    continue
            entry = entry.next
        else:
            if len(stack) == len(best) and blocked is None:
                blocked = entry.op
            if not stack:
                res.update(ok=False, steps=steps, seconds=time.monotonic() - t_start,
                           order=best, blocked=blocked)
                return res
            entry, state = stack.pop()
            placed &= ~(1 << entry.idx)
            _unlift(entry)
            entry = entry.next
    res.update(steps=steps, seconds=time.monotonic() - t_start)
    return res


def _removable(chunk, rest):
    """Whether removing chunk from a history whose other ops are rest keeps a
    linearizable history linearizable (so a violation of rest is one of the
    whole): reads, failed CAS, and writes of values nothing in rest observes,
    while rest has no failed CAS (whose outcome depends on every write)."""
    if any(op.kind in ("acquire", "release") for op in chunk):
        return False  # a lock op's effect is not a unique value: keep it
    if not any(op.written() is not None for op in chunk):
        return True
    if any(op.kind == "cas" and op.res == "fail" for op in rest):
        return False
    seen = set()
    for op in rest:
        if op.kind == "read" and op.res is not None:
            seen.add(op.res)
        elif op.kind == "cas" and op.res == "ok" and op.arg[0] is not None:
            seen.add(op.arg[0])
    return not any(op.written() in seen for op in chunk if op.written() is not None)


def minimise(ops, init=None, budget_seconds=5.0, check_seconds=1.0):
    """A smaller non-linearizable sub-history of ops (assumed non-linearizable),
    by delta debugging over sound removals, within budget_seconds."""
    deadline = time.monotonic() + budget_seconds
    cur = sorted(ops, key=lambda o: o.call)
    size = max(1, len(cur) // 2)
    while size >= 1 and time.monotonic() < deadline:
        i, changed = 0, False
        while i < len(cur) and time.monotonic() < deadline:
            chunk, rest = cur[i:i + size], cur[:i] + cur[i + size:]
            if rest and _removable(chunk, rest) and \
                    check_register(rest, init, max_steps=200000, max_seconds=check_seconds)["ok"] is False:
                cur, changed = rest, True
            else:
                i += size
        if not changed:
            size //= 2
    return cur


def check(history, max_steps=2000000, max_seconds=20.0, minimise_seconds=5.0):
    """Check a whole history (keys independent). Returns a dict: ok (True,
    False, None = a bound ran out and nothing was violated), ops, steps,
    seconds, keys (per-key results), and on a violation: key, window (a
    minimal non-linearizable sub-history of that key, ordered by invocation),
    order and blocked (from the full key history's search)."""
    t0 = time.monotonic()
    by_key = {}
    for op in history:
        by_key.setdefault(op.key, []).append(op)
    out = {"ok": True, "ops": len(history), "steps": 0, "keys": {}}
    for key in sorted(by_key):
        r = check_register(by_key[key], None, max_steps, max_seconds)
        out["keys"][key] = r
        out["steps"] += r["steps"]
        if r["ok"] is None and out["ok"] is True:
            out["ok"] = None
        if r["ok"] is False:
            out.update(ok=False, key=key, order=r["order"], blocked=r["blocked"])
            out["window"] = minimise(by_key[key], None, minimise_seconds)
            break
    out["seconds"] = time.monotonic() - t0
    return out


def report(result, t0=0.0, tail=6):
    """Lines describing a check's result; times relative to t0."""
    lines = ["linearizable: %s (%d ops, %d keys, %d steps, %.2f s)" % (
        {True: "yes", False: "NO", None: "undecided (bound reached)"}[result["ok"]],
        result["ops"], len(result["keys"]), result["steps"], result["seconds"])]
    if result["ok"] is False:
        lines.append("key %r: longest linearizable prefix %d ops, ending:" % (
            result["key"], len(result["order"])))
        lines += ["    " + op.fmt(t0) for op in result["order"][-tail:]]
        if result.get("blocked") is not None:
            lines.append("  no placement of the pending ops before the return of:")
            lines.append("    " + result["blocked"].fmt(t0))
        lines.append("  minimal non-linearizable window (%d ops):" % len(result["window"]))
        lines += ["    " + op.fmt(t0) for op in result["window"]]
    return lines
