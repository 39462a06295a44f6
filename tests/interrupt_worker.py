"""Driver for tests/test_interrupt.py: Ctrl-C in long compiled calls, in an
interpreter of its own (a KeyboardInterrupt that escaped, or a hang, must
fail the test, not the suite).

    python interrupt_worker.py

Each scenario prints one line ``name OK`` or ``name FAIL reason``.  The
SIGINT is real -- the process raises it itself, through the glue's handler
and Python's own -- at a chosen stop poll of the call (the test hook
``_core._interrupt_at``), so nothing here depends on timing: a call is
"stopped at once" when it made no poll after the one the signal came at.
"""
import signal
import sys
import threading
import traceback
import warnings

import numpy as np

import recmf
from recmf import _core
from recmf.models import blend as blend_module

AT = 3          # the poll at which the call raises SIGINT itself

results = []


def report(name, ok, why=""):
    print(f"{name} {'OK' if ok else 'FAIL ' + why}", flush=True)


def polls(fn):
    """How many stop polls fn's calls make (on this thread)."""
    _core._interrupt_at(0)
    fn()
    return _core._interrupt_at(0)


def same(a, b):
    if isinstance(a, tuple):
        return all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(x == b[k] or (x != x and b[k] != b[k]) for k, x in a.items())
    return np.array_equal(a, b)


def interrupted(name, fn, check_after=None):
    """fn() raises KeyboardInterrupt at poll AT and stops there; afterwards
    fn() gives what it gave before (nothing corrupted)."""
    try:
        want = fn()
        n = polls(fn)
        if n <= AT:
            return report(name, False, f"only {n} polls: the call is too short to test")
        _core._interrupt_at(AT)
        try:
            fn()
        except KeyboardInterrupt:
            made = _core._interrupt_at(0)
            if made != AT:
                return report(name, False, f"{made - AT} polls after the signal")
        else:
            return report(name, False, "no KeyboardInterrupt")
        got = fn()
        if not same(got, want):
            return report(name, False, "a different result after the interrupt")
        if check_after is not None and not check_after():
            return report(name, False, "state check after the interrupt failed")
        report(name, True)
    except Exception:
        report(name, False, traceback.format_exc().replace("\n", " | "))


def main():
    ratings, _, _ = recmf.datasets.synthetic_ratings(n_users=400, n_items=300, seed=3)
    train, val, test = recmf.temporal_split(ratings)
    data = recmf.Interactions.from_frame(train)
    users = np.tile(data.user_ids, 20)            # long enough for many blocks
    items = np.tile(data.item_ids, 40)[:len(users)]
    models = {
        "neuralmf": recmf.NeuralMF(emb_dim=16, hidden_dim=16, epochs=1, seed=0, n_threads=1).fit(data),
        "bprmf": recmf.BPRMF(emb_dim=16, epochs=1, triplets_per_epoch=5000, seed=0, n_threads=1).fit(data),
        "als": recmf.ALS(factors=8, iterations=2, n_threads=1).fit(data),
        "ease": recmf.EASE(l2=10.0, half_life=3.0, n_threads=1).fit(data),
        "transition": recmf.ItemTransition(n_threads=1).fit(train),
        "sasrec": recmf.SASRec(n_blocks=1, emb_dim=16, max_len=20, epochs=1, seed=0, n_threads=1).fit(train),
        "slist": recmf.SLIST(l2=10.0, n_threads=1).fit(train),
    }
    models["blend"] = recmf.Blend([models["transition"], models["ease"]], weights=[0.5, 0.5], n_threads=1).fit(data)
    many = np.tile(users, 10)                     # the dot-product models take blocks of 4,096 users
    for kind, m in models.items():
        asked = many if kind in ("bprmf", "als") else users
        interrupted(f"recommend-{kind}", lambda m=m, asked=asked: m.recommend(asked, k=10, return_scores=True))
    pairs_u, pairs_i = np.tile(users, 256), np.tile(items, 256)   # 2 M pairs: polls every 65,536
    for kind in ("neuralmf", "bprmf", "blend", "transition"):
        m = models[kind]

        def score(m=m):
            blend_module.clear_cache()            # the Blend would serve its cache
            return m.score(pairs_u, pairs_i)
        interrupted(f"score-{kind}", score)
    big_test = test.loc[np.tile(test.index.to_numpy(), 20)]
    interrupted("evaluate", lambda: recmf.evaluate(models["neuralmf"], big_test, k=10,
                                                   coverage_users=users[:50]))
    interrupted("fold-in-ease", lambda: models["ease"].recommend(users[:4000], k=5, history=val.assign(
        user_id=val["user_id"] + 10 ** 6)))
    two = recmf.NeuralMF(emb_dim=16, hidden_dim=16, epochs=1, seed=0, n_threads=2).fit(data)
    interrupted("recommend-neuralmf-2-threads", lambda: two.recommend(users, k=10))

    # Solvers: EASE, SLIST and transitions keep the previous fit whole; ALS keeps
    # the factors of its last complete iteration and says it was interrupted.
    for kind, make, src in (("ease", lambda: recmf.EASE(l2=10.0, n_threads=1), data),
                            ("transition", lambda: recmf.ItemTransition(window=3, n_threads=1), train),
                            ("slist", lambda: recmf.SLIST(l2=10.0, n_threads=1), train)):
        try:
            m = make().fit(src)
            want = m.recommend(users[:500], k=5)
            n = polls(lambda: make().fit(src))
            state = dict(vars(m))
            _core._interrupt_at(AT)
            try:
                m.fit(src)
                report(f"fit-{kind}", False, "no KeyboardInterrupt")
                continue
            except KeyboardInterrupt:
                made = _core._interrupt_at(0)
            kept = vars(m).keys() == state.keys() and all(vars(m)[k] is v for k, v in state.items())
            ok = n > AT and made == AT and kept and np.array_equal(m.recommend(users[:500], k=5), want)
            report(f"fit-{kind}", ok, f"polls {n}, after the signal {made - AT}, previous fit kept {kept}")
        except Exception:
            report(f"fit-{kind}", False, traceback.format_exc().replace("\n", " | "))
    try:
        one = recmf.ALS(factors=8, iterations=1, n_threads=1).fit(data)
        n_one = polls(lambda: recmf.ALS(factors=8, iterations=1, n_threads=1).fit(data))
        als = recmf.ALS(factors=8, iterations=3, n_threads=1)
        _core._interrupt_at(n_one + 5)            # inside iteration 2's first half
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            als.fit(data)
        ok = (als.interrupted_ and len(als.history) == 2 and np.array_equal(als.theta_, one.theta_)
              and any("interrupted" in str(w.message) for w in caught))
        report("fit-als", ok, f"interrupted_={als.interrupted_} history={len(als.history)} "
                              f"same factors as 1 iteration: {np.array_equal(als.theta_, one.theta_)}")
    except Exception:
        report("fit-als", False, traceback.format_exc().replace("\n", " | "))
    try:
        bpr = recmf.BPRMF(emb_dim=8, epochs=3, triplets_per_epoch=400_000, seed=0, n_threads=1)
        _core._interrupt_at(2)                    # in the first epoch's sampling
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bpr.fit(data)
        ok = bpr.interrupted_ and np.isfinite(bpr.theta_).all() and bpr.recommend(users[:10], k=3).shape == (10, 3)
        report("fit-bprmf-sampling", ok, f"interrupted_={bpr.interrupted_}")
    except Exception:
        report("fit-bprmf-sampling", False, traceback.format_exc().replace("\n", " | "))

    m = models["neuralmf"]
    want = m.recommend(users, k=10)

    # A user's own handler runs; the call goes on when it does not raise.
    seen = []
    old = signal.signal(signal.SIGINT, lambda sig, frame: seen.append(sig))
    try:
        _core._interrupt_at(AT)
        got = m.recommend(users, k=10)
        made = _core._interrupt_at(0)
        report("custom-handler-runs-and-call-goes-on", seen == [signal.SIGINT] and np.array_equal(got, want)
               and made > AT, f"handler calls {seen}, same result {np.array_equal(got, want)}, polls {made}")

        class Stop(Exception):
            pass

        def stop(sig, frame):
            raise Stop()
        signal.signal(signal.SIGINT, stop)
        _core._interrupt_at(AT)
        try:
            m.recommend(users, k=10)
            report("custom-handler-exception", False, "no exception")
        except Stop:
            report("custom-handler-exception", _core._interrupt_at(0) == AT, "polls after the signal")
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _core._interrupt_at(AT)
        got = m.recommend(users, k=10)
        report("ignored-sigint", np.array_equal(got, want), "result changed")
    finally:
        signal.signal(signal.SIGINT, old)
    report("handler-restored", signal.getsignal(signal.SIGINT) is old, "SIGINT handler not restored")

    # Another thread's call is not stopped: Python runs the handler in the
    # main thread (here: one that records the signal).
    seen.clear()
    signal.signal(signal.SIGINT, lambda sig, frame: seen.append(sig))
    out = {}

    def worker():
        _core._interrupt_at(AT)                   # this thread's call raises SIGINT itself
        out["recs"] = m.recommend(users, k=10)
        out["polls"] = _core._interrupt_at(0)
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    for _ in range(100):                          # let the main thread run the handler
        if seen:
            break
        threading.Event().wait(0.01)
    signal.signal(signal.SIGINT, old)
    report("other-thread-not-stopped", np.array_equal(out.get("recs"), want) and out.get("polls", 0) > AT,
           f"polls {out.get('polls')}")
    report("other-thread-signal-reaches-main", seen == [signal.SIGINT], f"handler calls {seen}")
    print("DONE", flush=True)


if __name__ == "__main__":
    sys.exit(main())
