"""The permutation parser: RankGPT's reading, made total, with every repair counted."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rankdistill.teacher.parse import format_permutation, parse_permutation


def test_well_formed_answer_needs_no_repair():
    order, repairs = parse_permutation("[4] > [2] > [1] > [3]", 4)
    assert order == [3, 1, 0, 2]
    assert sum(repairs.values()) == 0


def test_duplicates_out_of_range_and_missing_are_repaired_and_counted():
    # 2 twice, 9 and 0 out of range, 3 and 5 missing (appended in their previous order: 3 then 5)
    order, repairs = parse_permutation("[2] > [4] > [2] > [9] > [0] > [1]", 5)
    assert order == [1, 3, 0, 2, 4]
    assert repairs == {"duplicate": 1, "out_of_range": 2, "missing": 2}


def test_garbage_is_ignored_and_counted_once():
    order, repairs = parse_permutation("Sure! The ranking is [3] > [1], then 2.", 3)
    assert order == [2, 0, 1]
    assert repairs["garbage"] == 1
    assert repairs["missing"] == 0


def test_empty_answer_keeps_previous_order():
    order, repairs = parse_permutation("", 4)
    assert order == [0, 1, 2, 3]
    assert repairs == {"garbage": 1, "missing": 4}


def test_huge_and_unicode_digits_do_not_crash():
    order, repairs = parse_permutation("[" + "9" * 5000 + "] > [²] > [٣] > [2]", 3)
    assert order == [1, 0, 2]
    assert repairs["out_of_range"] == 1


def test_format_round_trips():
    assert format_permutation([2, 0, 1]) == "[3] > [1] > [2]"
    assert parse_permutation(format_permutation([2, 0, 1]), 3)[0] == [2, 0, 1]


@settings(max_examples=300, deadline=None)
@given(text=st.text(), n=st.integers(min_value=1, max_value=30))
def test_any_string_gives_a_valid_permutation(text, n):
    order, repairs = parse_permutation(text, n)
    assert sorted(order) == list(range(n))
    assert all(v > 0 for v in repairs.values())


@settings(max_examples=200, deadline=None)
@given(st.permutations(list(range(20))), st.lists(st.integers(-5, 40), max_size=30))
def test_named_ids_come_first_in_their_order(perm, noise):
    # A permutation followed by noise ids: the permutation survives intact, noise is only counted.
    text = format_permutation(perm) + " > " + " > ".join(f"[{x}]" for x in noise)
    order, repairs = parse_permutation(text, 20)
    assert order == perm
    assert repairs["missing"] == 0
    assert repairs["duplicate"] + repairs["out_of_range"] == len(noise)
