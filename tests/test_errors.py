"""Errors that blame the wrong thing (issue 20, field case 14).

Every error of select, evaluate, recommend, fit and the command line names
what is actually at fault -- the argument as the caller wrote it (``data``,
``val``, ``history``, ``--emb-dim``), the cause that holds (an empty grid,
not "val shares no user"), before any slow work where it can be known then.
"""
import json

import numpy as np
import pandas as pd
import pytest

import recmf
from recmf import cli


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    n = 1500
    df = pd.DataFrame({"user_id": rng.integers(0, 50, n), "movie_id": rng.integers(0, 60, n),
                       "rating": rng.integers(1, 6, n), "timestamp": np.arange(n)})
    train, val, test = recmf.temporal_split(df, n_val=1, n_test=2, min_train=3)
    return dict(df=df, train=train, val=val, test=test, data=recmf.Interactions.from_frame(train))


# -- select --------------------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda s: recmf.select(recmf.EASE, s["data"], s["val"], grid=[], progress=False),
    lambda s: recmf.select((recmf.EASE, []), s["data"], s["val"], progress=False),
    lambda s: recmf.select([recmf.Popularity, (recmf.EASE, [])], s["data"], s["val"], progress=False),
], ids=["grid=[]", "(EASE, [])", "in a list"])
def test_an_empty_grid_says_so_before_any_fit(call, small, monkeypatch):
    """Field case 14: an empty grid is "the grid is empty", not a question
    about val's users (val shares every user with data here)."""
    monkeypatch.setattr(recmf.Popularity, "fit", lambda *a, **k: pytest.fail("fitted"))
    with pytest.raises(ValueError, match=r"^the grid of EASE is empty: it gives no candidate to try"):
        call(small)
    best, table = recmf.select(recmf.EASE, small["data"], small["val"], grid={"l2": [10.0]}, progress=False)
    assert np.isfinite(table["recall@10"].iloc[0])          # the same val gives a finite metric


def test_no_finite_metric_names_the_cause_that_holds(small):
    data, val = small["data"], small["val"]
    with pytest.raises(ValueError, match=r"no candidate gave a finite recall@10 on val: no row of val is "
                                         r"relevant \(rating >= 4\)"):
        recmf.select(recmf.Popularity, data, val.assign(rating=1), progress=False)
    strangers = val.assign(user_id=val["user_id"] + 10 ** 6, rating=5)
    with pytest.raises(ValueError, match=r"none of the \d+ users of val with a relevant row is in data"):
        recmf.select(recmf.Popularity, data, strangers, progress=False)
    # a user who has seen every item: a relevant row, but an empty list
    full = pd.DataFrame({"user_id": [1, 1, 2], "movie_id": [5, 6, 5], "rating": 5})
    with pytest.raises(ValueError, match="every user of val with a relevant row got an empty list"):
        recmf.select(recmf.Popularity, recmf.Interactions.from_frame(full),
                     pd.DataFrame({"user_id": [1], "movie_id": [5], "rating": 5}), progress=False)


def test_select_and_fit_name_data_and_val(small):
    train, val = small["train"], small["val"]
    with pytest.raises(ValueError, match=r"^data has no positive rows"):
        recmf.select(recmf.Popularity, train.assign(rating=1), val, progress=False)
    with pytest.raises(ValueError, match=r"^data\['movie_id'\] has missing values"):
        recmf.Popularity().fit(train.assign(movie_id=np.where(np.arange(len(train)) == 3, np.nan, 1.0)))
    bad_val = val.assign(rating=np.where(np.arange(len(val)) == 2, np.nan, 5.0))
    with pytest.raises(ValueError, match=r"^val\['rating'\] has a missing or infinite value at position 2"):
        recmf.select(recmf.Popularity, small["data"], bad_val, progress=False)
    with pytest.raises(ValueError, match=r"^val\['rating'\] has a missing or infinite value"):
        recmf.BPRMF(emb_dim=4, epochs=1, eval_every=1, triplets_per_epoch=500, top_n=20,
                    n_threads=1).fit(small["data"], val=bad_val)
    strings = val.assign(movie_id=val["movie_id"].astype(str))
    with pytest.raises(TypeError, match=r"^val\['movie_id'\] are non-integer"):
        recmf.select(recmf.Popularity, small["data"], strings, progress=False)
    # evaluate itself still speaks of test
    with pytest.raises(ValueError, match=r"^test\['rating'\] has a missing"):
        recmf.evaluate(recmf.Popularity().fit(small["data"]), bad_val)


# -- evaluate ------------------------------------------------------------------

def test_evaluate_names_a_list_that_is_not_one(small):
    test = small["test"]
    u = int(test["user_id"].iloc[0])
    with pytest.raises(TypeError, match=rf"^model\[{u}\] must be a list of item ids, got str 'abc'"):
        recmf.evaluate({u: "abc"}, test, catalog=[1, 2])
    with pytest.raises(TypeError, match=r"^model\(\d+, 10\), the list it returned, must be a list of item "
                                        r"ids, got NoneType"):
        recmf.evaluate(lambda user, k: None, test, catalog=[1, 2])


# -- the command line ----------------------------------------------------------

def _error(args, capsys):
    code = cli.main(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("recmf: error")]
    assert code == 2 and len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("args, message", [
    (["--model", "bprmf", "--emb-dim", "0"], "--emb-dim must be >= 1, got 0"),
    (["--model", "neuralmf", "--hidden-dim", "-2"], "--hidden-dim must be >= 1"),
    (["--model", "ease", "--l2", "-1"], "--l2 must be a finite number > 0"),
    (["--model", "ease", "--half-life", "0"], "--half-life must be a finite number > 0"),
    (["--model", "transition", "--window", "99"], "--window must be in [1, 64]"),
    (["--model", "als", "--threads", "-1"], "--threads must be >= 0"),
    (["--n-val", "-1"], "--n-val must be >= 0, got -1"),
    (["--min-train", "-3"], "--min-train must be >= 0"),
    (["--threshold", "nan"], "--threshold must be a finite number, got nan"),
])
def test_cli_names_the_flag_before_loading(args, message, capsys):
    # the data folder does not exist: these must fail before it is looked at
    line = _error(["run", "--data", "/nonexistent/folder", *args], capsys)
    assert message in line and "not found" not in line


def test_cli_refuses_a_save_path_it_could_not_write_before_training(tmp_path, capsys):
    line = _error(["run", "--data", "/nonexistent/folder", "--save", str(tmp_path / "no" / "m.npz")], capsys)
    assert f"folder {tmp_path / 'no'} does not exist" in line
    line = _error(["run", "--data", "/nonexistent/folder", "--save", str(tmp_path)], capsys)
    assert "is a folder" in line


def test_cli_os_and_memory_errors_are_one_line(monkeypatch, capsys):
    def boom(args):
        raise PermissionError(13, "Permission denied", "/ro/model.npz")
    monkeypatch.setattr(cli, "cmd_info", boom)
    assert "Permission denied: '/ro/model.npz'" in _error(["info"], capsys)

    def big(args):
        raise MemoryError("EASE on 300,000 items needs an 300,000 x 300,000 float32 matrix: 335 GiB")
    monkeypatch.setattr(cli, "cmd_info", big)
    assert "335 GiB" in _error(["info"], capsys)


def test_cli_recommend_k_beyond_the_catalogue_names_the_flag(small, tmp_path, capsys):
    path = tmp_path / "pop.npz"
    model = recmf.Popularity().fit(small["data"])
    model.save(path)
    n = model.data_.n_items
    line = _error(["recommend", "--model", str(path), "--users", "1", "--k", str(n + 1)], capsys)
    assert f"--k {n + 1} is larger than the catalogue of {path} ({n} items)" in line
    assert cli.main(["recommend", "--model", str(path), "--users", "1", "--k", "2", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


# -- recommend and score ---------------------------------------------------------

def test_score_of_pairs_that_do_not_line_up_says_so_first(small):
    model = recmf.Popularity().fit(small["data"])
    with pytest.raises(ValueError, match="same length, got 2 and 1"):
        model.score([10 ** 9, 1], [1])         # not "unknown user id 1000000000"
