"""The tokenizer approximation is deterministic and keeps prefix tokens stable under appends."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from delegation_machine.engine.inference.tokens import ApproxTokenizer, ChatTurnText, render_chat


def test_known_pieces() -> None:
    tok = ApproxTokenizer()
    assert tok.encode("def foo(x):\n    return x + 1\n") == [
        "def",
        " foo",
        "(",
        "x",
        "):",
        "\n",
        "    ",
        "return",
        " x",
        " +",
        " 1",
        "\n",
    ]
    assert tok.encode("abcdefghijkl") == ["abcdefgh", "ijkl"]
    assert tok.encode("1234567") == ["123", "456", "7"]


def test_code_density_is_plausible() -> None:
    source = (
        "class TokenLedger:\n    def record(self, task_id: str, usage: Usage) -> None:\n"
        "        self._tasks[task_id].add(usage)  # totals per task\n"
    ) * 20
    chars_per_token = len(source) / ApproxTokenizer().count(source)
    assert 2.5 < chars_per_token < 5.0


@given(
    st.lists(st.tuples(st.sampled_from(["system", "user"]), st.text(max_size=60)), max_size=5),
    st.tuples(st.sampled_from(["user", "assistant"]), st.text(max_size=60)),
)
def test_appending_a_message_never_changes_earlier_tokens(
    turns: list[tuple[str, str]], extra: tuple[str, str]
) -> None:
    tok = ApproxTokenizer()
    before = [ChatTurnText(r, c) for r, c in turns]
    after = [*before, ChatTurnText(*extra)]
    a, b = tok.encode(render_chat(before)), tok.encode(render_chat(after))
    assert b[: len(a)] == a
