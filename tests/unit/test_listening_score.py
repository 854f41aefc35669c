"""The listening benchmark's caller script and scoring on a scripted wire: turn timing, cut-ins, dead air,
false barge-ins, what was heard."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest

from bench.listening_caller import ListeningCaller, SpokenTurn, TurnTimeline
from bench.listening_score import Disturbance, Reply, classify_reply, score_call
from bench.listening_spec import VOICES, CallPlan, Condition, Interjection, Split, Turn, TurnKind
from gateway.conversation.settings import ConversationSettings
from tests.rig.ports import free_port_pair
from tests.rig.rtp_peer import RtpPeer

T0 = 1_800_000_000.0
DONT_KNOW = ConversationSettings().unknown_answer
SAY_AGAIN = ConversationSettings().repeat_request
LOUD = np.full(160, 3000, dtype=np.int16)


def _line(event: str, tick: float, **fields: object) -> dict[str, object]:
    stamp = datetime.fromtimestamp(T0 + tick * 0.02, UTC).isoformat()
    return {"event": event, "timestamp": stamp, "call_id": "c", **fields}


def _turn(speech_end: int, caller: str, *, first_rtp_ms: float | None, cancelled: bool = False,
          logged_late: bool = False, bot: str = "") -> dict[str, object]:
    """A call record `turn` event; `t` (when it was written) may be long after the speech ended."""
    return {"kind": "turn", "t": T0 + (speech_end + (150 if logged_late else 20)) * 0.02, "caller": caller,
            "speech_end": T0 + speech_end * 0.02, "cancelled": cancelled, "stages": {"first_rtp_ms": first_rtp_ms},
            "bot": bot}


@pytest.fixture
def peer() -> Iterator[RtpPeer]:
    p = RtpPeer(free_port_pair())
    yield p
    p.sock.close()


def _bot(peer: RtpPeer, start: int, end: int) -> None:
    for tick in range(start, end):
        peer.received[tick] = LOUD


def test_scores_a_scripted_call(peer: RtpPeer) -> None:
    question = Turn(TurnKind.QUESTION, ("Are you open on Saturday?",), interjection=Interjection.COUGH)
    thought = Turn(TurnKind.MID_THOUGHT, ("Hi, I was wondering", "are you open on Saturday?"), (0.9,))
    answer = Turn(TurnKind.ONE_WORD, ("Tuesday.",))
    pcm = (np.zeros(160, dtype=np.int16),)
    timelines = [
        # greeting 0-100; question 150-200, answer 225 (500 ms), cough 255-275 cuts it (barge-in logged at 258)
        TurnTimeline(SpokenTurn(question, pcm), 150, [(150, 200)], interjection=(255, 275), next_start=400),
        # "Hi, I was wondering" 400-450, pause 450-495: the bot starts at 470 (cut-in); the rest 495-560
        TurnTimeline(SpokenTurn(thought, pcm * 2), 400, [(400, 450), (495, 560)], next_start=700),
        # "Tuesday" 700-720, a 80 ms blip at 730 (a reply cut by a barge-in), no answer for 5 s: dead air
        TurnTimeline(SpokenTurn(answer, pcm), 700, [(700, 720)], next_start=970),
    ]
    _bot(peer, 0, 100)
    _bot(peer, 225, 260)
    _bot(peer, 470, 495)
    _bot(peer, 600, 650)
    _bot(peer, 730, 734)
    log = [_line("barge_in", 258)]
    record = [_turn(204, "Are you open on Saturday?", first_rtp_ms=400.0, logged_late=True,
                    bot="No, we are closed on weekends."),
              _turn(278, "cough", first_rtp_ms=None),  # the interjection's: not scored
              _turn(452, "Hi, I was wondering.", first_rtp_ms=380.0, cancelled=True,  # answered, then cut
                    bot=SAY_AGAIN),
              _turn(562, "and you open on Saturday", first_rtp_ms=None, cancelled=True),  # dropped speculation
              _turn(562, "Are you open on Saturday?", first_rtp_ms=420.0, bot=DONT_KNOW)]
    plan = CallPlan(0, Split.HELD_OUT, Condition("clean"), VOICES[0], (question, thought, answer), seed=1)
    score = score_call(plan, timelines, peer, log, record, T0)
    q, m, a = score.turns
    assert (q.heard, q.errors.errors, q.latency_ms, q.dead_air) == ("Are you open on Saturday?", 0, 500.0, False)
    assert (m.pauses, m.cut_ins, m.dead_air) == (1, 1, False)
    assert m.heard == "Hi, I was wondering. Are you open on Saturday?"  # the dropped speculation is not
    assert (a.heard, a.dead_air, a.latency_ms) == ("", True, None)  # ignored: no transcript in the record
    # the reply to the finished turn is the last one answered: the repeat request to its first half is not
    assert [(t.reply, t.heard_well, t.answerable) for t in score.turns] == [
        (Reply.ANSWER, True, True), (Reply.DONT_KNOW, True, True), (Reply.NONE, False, False)]
    coughs = [r for r in score.replies if r.disturbance is Disturbance.COUGH]
    assert [(r.barge_in_logged, r.false_barge_in) for r in coughs] == [(True, True)]
    assert not any(r.barge_in_logged for r in score.replies if r.disturbance is Disturbance.SILENCE)


def test_classifies_replies_by_their_fixed_lines() -> None:
    assert classify_reply("") is Reply.NONE
    assert classify_reply(SAY_AGAIN) is Reply.REPEAT
    assert classify_reply(DONT_KNOW) is Reply.DONT_KNOW
    assert classify_reply(f"We open at 8. {DONT_KNOW}") is Reply.DONT_KNOW  # a declined answer ends with it
    assert classify_reply("Monday to Friday, 8 am to 5 pm.") is Reply.ANSWER


def test_caller_waits_for_each_reply_and_interjects_into_it(peer: RtpPeer) -> None:
    word = np.full(160 * 20, 3000, dtype=np.int16)  # 0.4 s of "speech"
    turns = [SpokenTurn(Turn(TurnKind.MID_THOUGHT, ("a", "b"), (1.0,)), (word, word)),
             SpokenTurn(Turn(TurnKind.QUESTION, ("c",), interjection=Interjection.COUGH), (word,), word[:1600])]
    caller = ListeningCaller(turns)
    _bot(peer, 0, 50)  # the greeting
    for tick in range(2000):
        if caller.timelines and tick == caller.timelines[-1].end + 25:
            _bot(peer, tick, tick + 100)  # every answer: 0.5 s after the turn, 2 s long
        caller.on_tick(peer, tick)
        if caller.finished.is_set():
            break
    first, second = caller.timelines
    assert first.start == 100  # after 1 s of quiet following the greeting
    assert first.speech == [(100, 120), (170, 190)]  # the 1 s pause is kept whatever the bot does
    assert second.start == first.end + 25 + 100 + 50
    assert second.interjection == (second.end + 25 + 30, second.end + 25 + 30 + 10)
    assert caller.finished.is_set()
