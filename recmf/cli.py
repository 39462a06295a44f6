"""Command line: ``recmf run`` (load -> split -> fit -> evaluate) and
``recmf recommend`` (top-K from a saved model).

Progress goes to stderr, results to stdout (``--json`` for machines); bad
arguments or unreadable files end with a one-line message and exit code 2, as
does a ``recommend`` that finds no recommendation for any requested user.
"""
from __future__ import annotations

import argparse
import json
import sys
import time


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def _log(msg, quiet=False):
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def _buildable_models():
    """The registered models a command line can build: those whose
    constructor has no required parameter (a Blend needs its models)."""
    import inspect

    from recmf import available_models
    out = {}
    for name, cls in available_models().items():
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
        if all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
            out[name] = cls
    return out


#: what each hyperparameter flag sets; its default is listed from the
#: constructors of the models that take it (never written twice)
_HP_HELP = {
    "emb_dim": "embedding size", "hidden_dim": "NeuralMF hidden layer width",
    "dropout": "NeuralMF dropout on the hidden layer", "lr": "Adam learning rate",
    "weight_decay": "L2 added to the gradient", "batch_size": "training batch size",
    "epochs": "training epochs", "n_neg": "NeuralMF negatives per positive",
    "negatives": "BPRMF negative sampling", "top_n": "BPRMF: negatives from the top_n most popular items",
    "triplets_per_epoch": "BPRMF triplets drawn per epoch",
    "eval_every": "evaluate the watched split every this many epochs",
    "patience": "early stopping: evaluations without improvement before stopping (none: no stopping)",
    "adam": "Adam variant: dense (as PyTorch) or lazy (only the batch's rows)",
    "factors": "ALS latent dimension", "regularization": "ALS L2 weight",
    "alpha": "ALS confidence of a positive: 1 + alpha; SLIST weight of the similarity term (0..1)",
    "iterations": "ALS iterations",
    "solver": "ALS per-row solver", "cg_steps": "ALS conjugate-gradient steps per row",
    "l2": "EASE / SLIST L2 weight on the item-item weights",
    "half_life": "EASE / ItemTransition / SLIST recency half-life, in interactions",
    "window": "ItemTransition: how many later positives a positive links to; SLIST: items on each side "
              "of a place",
    "gap_decay": "ItemTransition weight per extra step of distance",
    "max_len": "SASRec: most recent items of a user it reads", "n_blocks": "SASRec transformer blocks",
    "n_heads": "SASRec attention heads",
    "loss": "SASRec: cross-entropy over every item (softmax) or over sampled negatives",
    "n_negatives": "SASRec: shared negatives per batch (sampled loss)",
    "position_decay": "SLIST: places over which a weight falls by e",
    "inputs": "EASE / ItemTransition / SLIST / SASRec: read each user's positives, or every rated item (then rated "
              "items are never recommended: the watched protocol)",
}


def _hp_default(name):
    """"default: neuralmf 64, bprmf 64" from the models' own signatures."""
    import inspect
    found = []
    for kind, cls in _buildable_models().items():
        p = inspect.signature(cls.__init__).parameters.get(name)
        if p is not None:
            found.append(f"{kind} {p.default!r}")
    return "the model's: " + ", ".join(found) if found else "the model's"


def _parser():
    p = argparse.ArgumentParser(prog="recmf", description="Implicit-feedback recommenders with a C core.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="load -> split -> fit -> evaluate, print the metrics")
    run.add_argument("--data", help="MovieLens folder (ml-1m, ml-100k, ml-latest-small layouts). "
                     "Default: ml-1m found in $RECMF_DATA, ./data, ../shared/data or ~/.cache/recmf; "
                     "otherwise a built-in synthetic dataset")
    run.add_argument("--model", choices=list(_buildable_models()), default="neuralmf",
                     help="model to train (default: neuralmf)")
    run.add_argument("--k", type=int, default=10, help="length of the top-k lists evaluated (default: 10)")
    run.add_argument("--threshold", type=float, default=4, help="a rating >= threshold is a positive (default: 4)")
    run.add_argument("--n-val", type=int, default=1, help="each user's last rows before test go to val (default: 1)")
    run.add_argument("--n-test", type=int, default=5, help="each user's last rows go to test (default: 5)")
    run.add_argument("--min-train", type=int, default=5,
                     help="users with fewer than min-train + n-val + n-test rows stay in train (default: 5)")
    run.add_argument("--watch", choices=("val", "test"), default="val",
                     help="split evaluated during training / early stopping (test = the notebook; default: val)")
    hp = run.add_argument_group("hyperparameters (defaults: the model's own, the reference notebook's "
                                "for NeuralMF and BPRMF)")
    for name, what in _HP_HELP.items():
        kwargs = {"type": int if name in ("emb_dim", "hidden_dim", "batch_size", "epochs", "n_neg", "top_n",
                                          "triplets_per_epoch", "eval_every", "patience", "factors",
                                          "iterations", "cg_steps", "window", "max_len", "n_blocks",
                                          "n_heads", "n_negatives") else float}
        if name in ("negatives", "adam", "solver", "loss", "inputs"):
            kwargs = {"choices": {"negatives": ("popular", "uniform"), "adam": ("dense", "lazy"),
                                  "solver": ("cg", "cholesky"), "loss": ("softmax", "sampled"),
                                  "inputs": ("positives", "rated")}[name]}
        # The default is the chosen model's: shown in the text, not as argparse's.
        hp.add_argument("--" + name.replace("_", "-"), help=f"{what} (default: {_hp_default(name)})",
                        default=None, **kwargs)
    hp.add_argument("--seed", type=int, default=0, help="seed of every random draw (default: 0)")
    hp.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    run.add_argument("--save", help="write the fitted model to this .npz file (default: not saved)")
    run.add_argument("--json", action="store_true", help="print the report as JSON (default: a table)")
    run.add_argument("--quiet", action="store_true", help="no progress on stderr (default: progress shown)")

    rec = sub.add_parser("recommend", help="top-K items for users from a saved model")
    rec.add_argument("--model", required=True, help="a .npz written by `recmf run --save` or model.save()")
    rec.add_argument("--users", required=True, nargs="+",
                     help="user ids, read as the type the model was trained with (\"007\" stays a "
                          "string for a model with string ids); none found is an error")
    rec.add_argument("--k", type=int, default=10, help="items per user (default: 10)")
    rec.add_argument("--include-seen", action="store_true", help="do not drop items seen in training (default: dropped)")
    rec.add_argument("--items", metavar="FILE",
                     help="only recommend the item ids in this file (one per line; default: every item)")
    rec.add_argument("--exclude-items", metavar="FILE",
                     help="never recommend the item ids in this file (one per line; default: none)")
    rec.add_argument("--json", action="store_true", help="print the recommendations as JSON records (default: a table)")

    sub.add_parser("info", help="build facts: OpenMP, BLAS")
    return p


#: the columns of what load_movielens gives (the run never reads the config)
_MOVIELENS = dict(user_col="user_id", item_col="movie_id", rating_col="rating", time_col="timestamp")

_HP = {"emb_dim", "hidden_dim", "dropout", "lr", "weight_decay", "batch_size", "epochs", "n_neg",
       "negatives", "top_n", "triplets_per_epoch", "eval_every", "patience", "adam",
       "factors", "regularization", "alpha", "iterations", "solver", "cg_steps",
       "l2", "half_life", "window", "gap_decay", "max_len", "n_blocks", "n_heads", "loss",
       "n_negatives", "position_decay", "inputs"}


#: the flag of each model parameter the command line sets under another name
_FLAG_OF = {"n_threads": "--threads"}


def _flag(name):
    return _FLAG_OF.get(name, "--" + name.replace("_", "-"))


def _as_flags(err, names):
    """A model's error about one of its parameters (messages start with the
    parameter's name), naming the flag the user typed instead."""
    msg = str(err)
    for name in sorted(names, key=len, reverse=True):
        if msg.startswith(name + " ") or msg.startswith(name + "="):
            return _flag(name) + msg[len(name):]
    return msg


def _model(args):
    import inspect

    import recmf
    cls = recmf.available_models()[args.model]
    accepted = set(inspect.signature(cls.__init__).parameters)
    given = {k: v for k, v in vars(args).items() if k in _HP and v is not None}
    rejected = sorted(set(given) - accepted)
    if rejected:
        raise CliError(f"{args.model} does not take {_flag(rejected[0])}")
    for name in ("epochs", "iterations"):      # the API allows 0 (an untrained model); a run trains
        if isinstance(given.get(name), int) and given[name] < 1:
            raise CliError(f"--{name} must be >= 1 (`recmf run` trains the model), got {given[name]}")
    # Settings every run has: passed to the models whose constructor takes them.
    common = dict(threshold=args.threshold, seed=args.seed, n_threads=args.threads, verbose=not args.quiet,
                  **_MOVIELENS)
    params = {**{k: v for k, v in common.items() if k in accepted}, **given}
    try:
        model = cls(**params)
        model._validate()           # e.g. --epochs 0: rejected before the data is loaded
    except (TypeError, ValueError) as e:
        raise CliError(_as_flags(e, params)) from None
    return model


def _check_run_args(args):
    """What a run would only find out after loading (or training): refused
    first, naming the flag."""
    from pathlib import Path

    from recmf._checks import check_positive_int, check_threshold
    from recmf.split import _check_count
    check_positive_int(args.k, "--k")
    for name in ("n_val", "n_test", "min_train"):
        _check_count(getattr(args, name), _flag(name))
    try:
        check_threshold(args.threshold)
    except (TypeError, ValueError) as e:
        raise CliError(_as_flags(e, ["threshold"])) from None
    if args.save:
        save = Path(args.save)
        if save.is_dir():
            raise CliError(f"--save {args.save} is a folder: give the model file's path, e.g. "
                           f"{save / (args.model + '.npz')}")
        if not save.parent.is_dir():
            raise CliError(f"--save {args.save}: folder {save.parent} does not exist (the model would be "
                           "trained and then lost)")


def _load(args):
    import recmf
    from recmf.datasets import synthetic_ratings
    if args.data:
        ratings, _, movies = recmf.load_movielens(args.data)
        source = args.data
    else:
        folder = recmf.find_movielens("ml-1m")
        if folder is not None:
            ratings, _, movies = recmf.load_movielens(folder)
            source = str(folder)
        else:
            ratings, _, movies = synthetic_ratings(seed=args.seed)
            source = "synthetic (no MovieLens found; pass --data or set $RECMF_DATA)"
    return ratings, movies, source


def cmd_run(args):
    import recmf
    _check_run_args(args)
    model = _model(args)        # argument errors before any slow work
    t0 = time.perf_counter()
    ratings, movies, source = _load(args)
    _log(f"data: {source} ({len(ratings):,} ratings)", args.quiet)
    train, val, test = recmf.temporal_split(ratings, n_val=args.n_val, n_test=args.n_test,
                                            min_train=args.min_train, user_col="user_id",
                                            time_col="timestamp")
    _log(f"split: train {len(train):,} / val {len(val):,} / test {len(test):,} rows", args.quiet)
    # inputs="rated" reads (and never recommends) every rated item: the watched protocol
    seen = "rated" if getattr(model, "inputs", "positives") == "rated" else "positives"
    data = recmf.Interactions.from_frame(train, threshold=args.threshold, seen=seen, **_MOVIELENS)
    _log(f"index: {data.n_users:,} users x {data.n_items:,} items, {data.nnz:,} positives", args.quiet)
    t_fit = time.perf_counter()
    watched = val if args.watch == "val" else test
    model.fit(data, val=watched if len(watched) else None)   # models without epochs ignore val
    fit_seconds = time.perf_counter() - t_fit
    report = recmf.evaluate(model, test, k=args.k, catalog=movies["movie_id"].unique(),
                            threshold=args.threshold, user_col="user_id", item_col="movie_id",
                            rating_col="rating")
    out = {"model": args.model, "data": source, "fit_seconds": round(fit_seconds, 3),
           "total_seconds": round(time.perf_counter() - t0, 3), **report}
    if args.save:
        model.save(args.save)
        out["saved"] = args.save       # shown once, with the results
    if args.json:
        print(json.dumps(out))
    else:
        width = max(len(k) for k in out)
        for key, value in out.items():
            shown = f"{value:.6f}" if isinstance(value, float) else str(value)
            print(f"{key:<{width}}  {shown}")


def _parse_ids(texts, ids, what="user"):
    """Ids from text in the type of the model's ``ids``: the command line
    (or a list file) only has text, and "007" must stay "007" for a model
    trained on strings."""
    import re

    import numpy as np
    if ids.dtype != np.int64:
        return np.array(texts, dtype=object)
    bad = [t for t in texts if re.fullmatch(r"[+-]?[0-9]+", t.strip()) is None]
    if bad:
        raise CliError(f"{what} id {bad[0]!r} is not an integer, and this model's {what} ids are integers")
    values = [int(t) for t in texts]
    out_of_range = [v for v in values if not -2 ** 63 <= v < 2 ** 63]
    if out_of_range:
        raise CliError(f"{what} id {out_of_range[0]} is outside the int64 range of this model's ids")
    return np.array(values, dtype=np.int64)


def _parse_users(texts, model):
    return _parse_ids(texts, model.data_.user_ids)


def _item_list(path, model, flag):
    """The item ids of a list file (one per line, blank lines skipped), or
    None without one."""
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            texts = [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"{flag} {path}: cannot read it ({e})") from None
    if not texts:
        raise CliError(f"{flag} {path} lists no item id")
    return _parse_ids(texts, model.data_.item_ids, what="item")


def cmd_recommend(args):
    import recmf
    from recmf._checks import check_positive_int
    check_positive_int(args.k, "--k")
    model = recmf.load(args.model)
    if args.k > model.data_.n_items:
        raise CliError(f"--k {args.k} is larger than the catalogue of {args.model} "
                       f"({model.data_.n_items} items)")
    users = _parse_users(args.users, model)
    frame = model.recommend_frame(users, k=args.k, exclude_seen=not args.include_seen,
                                  items=_item_list(args.items, model, "--items"),
                                  exclude_items=_item_list(args.exclude_items, model, "--exclude-items"))
    known = model.data_.user_index(users) >= 0
    if frame.empty:
        what = "is unknown to the model" if not known.any() else "has no item left to recommend"
        raise CliError(f"no recommendations: every requested user {what} "
                       f"({', '.join(map(repr, args.users[:5]))}{' ...' if len(users) > 5 else ''})")
    if not known.all():
        _log("unknown users (no recommendations): " + ", ".join(repr(u) for u in users[~known].tolist()))
    if args.json:
        print(frame.to_json(orient="records"))
    else:
        print(frame.to_string(index=False))


def cmd_info(args):
    import recmf
    info = recmf.build_info()
    for key, value in info.items():
        print(f"{key}: {value}")


def main(argv=None):
    args = _parser().parse_args(argv)
    handler = {"run": cmd_run, "recommend": cmd_recommend, "info": cmd_info}[args.command]
    try:
        handler(args)
        sys.stdout.flush()      # a closed pipe shows here, inside the try
    except (CliError, FileNotFoundError, ValueError, TypeError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"recmf: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("recmf: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of stdout went away (`recmf ... | head`): not an error
        # of ours; point stdout at devnull so the exit flush does not raise
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (OSError, MemoryError) as e:
        # a file that cannot be written (--save into a read-only folder), a
        # model too big for this machine (EASE says how big): one line too
        print(f"recmf: error: {e or 'out of memory'}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
