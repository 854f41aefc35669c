"""Answering on any business (issue 13): facts in instructions retrieved, misheard words matched,
follow-ups, the fact said when the model leaves it out, parroting caught."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import structlog

from gateway.conversation.answer_check import AnswerGate, FactSentence, best_sentences, parrots, says_fact
from gateway.conversation.generate import Generation, Generator
from gateway.conversation.planner import plan_turn
from gateway.conversation.settings import ConversationSettings
from gateway.conversation.skills import AgentSkills
from gateway.knowledge import KnowledgeBase
from gateway.knowledge.chunking import chunk_fact_list
from gateway.knowledge.sounds import neighbours, sound_key, sounds_alike, vocabulary_of
from gateway.tools import ToolsConfig
from models.base import ChatMessage

BAKERY = """You are the counter assistant of Crumb and Co, a bakery.
Keep answers short.
Facts:
- Opening hours: Tuesday to Saturday 7 am to 3 pm, Sunday 8 am to 1 pm. Closed on Mondays.
- Address: 22 Baker Street, on the corner of Elm Road.
- Parking: free parking is behind the building.
- Sourdough loaf: 7 dollars.
- Gluten free bread is baked on Fridays only.
- Birthday cakes must be ordered at least 3 days in advance.
If you do not know something, say so."""


def bakery() -> AgentSkills:
    knowledge = KnowledgeBase([], texts={"instructions": BAKERY})
    knowledge.build()
    return AgentSkills("bakery", BAKERY, ToolsConfig({}), knowledge)


def plan(skills: AgentSkills, text: str, history: Sequence[ChatMessage] = ()):
    return plan_turn(skills, text, transfer_notice="Transferring.", unknown_answer="UNKNOWN", history=history)


# -- retrieval --------------------------------------------------------------------------------------


def test_a_fact_list_in_instructions_becomes_one_chunk_per_item_and_prose_is_left_out():
    chunks = chunk_fact_list(BAKERY)
    assert len(chunks) == 6
    assert chunks[1].heading == ("Address",) and chunks[1].text.startswith("22 Baker Street")
    assert chunks[4].heading == () and "Fridays" in chunks[4].text


def test_questions_of_issue_13_find_their_fact_in_the_instructions():
    skills = bakery()
    for question, expected in [("how much is a sourdough loaf", "7 dollars"), ("what is your address", "Baker"),
                               ("when do you close on saturday", "3 pm"), ("where can i park my car", "behind"),
                               ("how early do i need to order a birthday cake", "3 days"),
                               ("which day do you bake gluten free bread", "Fridays")]:
        turn = plan(skills, question)
        assert turn.say is None, question
        assert expected in (turn.content or ""), question


WEEKDAYS_ONLY = """You are the receptionist of Harbor Dental.
Facts:
- Opening hours: Monday to Friday, 8 am to 5 pm. Closed on weekends.
- Address: 12 Harbor Street, next to the ferry terminal.
- A cleaning costs 90 dollars.
- Parking: free, behind the building."""


def test_a_day_is_answered_by_the_fact_that_names_it_in_general_terms():
    """"Open on Saturday." against "Closed on weekends" was refused as unknown: "saturday" is in no
    fact, so it counted as another topic. The fact's general words ("weekends", a day range,
    "daily") are indexed with the days they cover, and the answer check reads them too."""
    knowledge = KnowledgeBase([], texts={"instructions": WEEKDAYS_ONLY})
    knowledge.build()
    skills = AgentSkills("dental", WEEKDAYS_ONLY, ToolsConfig({}), knowledge)
    for question, fact in [("Open on Saturday.", "Closed on weekends."),
                           ("Are you open on Sundays?", "Closed on weekends."),
                           ("Are you open on Wednesday?", "Monday to Friday, 8 am to 5 pm.")]:
        turn = plan(skills, question)
        assert turn.say is None, question
        assert turn.best_fact == fact, question
    for question in ("what about Thursday", "Open on Wednesday."):  # inside "Monday to Friday"
        assert plan(skills, question).say is None, question
    assert plan(skills, "Do you sell fishing licences?").say == "UNKNOWN"
    # the bakery: "Tuesday to Saturday" covers Wednesday; "Closed on Mondays" is still the Monday fact
    bake = bakery()
    assert "7 am to 3 pm" in (plan(bake, "are you open on a wednesday").content or "")
    assert plan(bake, "open on monday?").say is None


def test_a_number_the_caller_gives_is_a_value_not_a_topic():
    """"she's seven" does not make the question about something the facts never mention."""
    salon = "Facts:\n- Men's cut: 30 dollars.\n- Children under 12: 20 dollars.\n- Colour from 60 dollars."
    knowledge = KnowledgeBase([], texts={"instructions": salon})
    knowledge.build()
    skills = AgentSkills("salon", salon, ToolsConfig({}), knowledge)
    turn = plan(skills, "and for my daughter she's seven")
    assert turn.say is None and "20 dollars" in (turn.content or "")
    assert plan(skills, "do you do nails for two").say == "UNKNOWN"


def test_implied_words_spell_out_day_ranges_and_general_day_words():
    from gateway.knowledge.implied import implied_words

    assert implied_words("Tuesday to Saturday: 7 am to 3 pm.") == ("wednesday", "thursday", "friday")
    assert implied_words("Fri - Mon: closed") == ("friday", "saturday", "sunday", "monday")  # abbreviations too
    assert set(implied_words("Closed on weekends and public holidays.")) == {"saturday", "sunday"}
    assert len(implied_words("Open daily from 7.")) == 7 and len(implied_words("open 7 days a week")) == 7
    assert implied_words("Free parking behind the building.") == ()


def test_a_topic_the_business_never_mentions_is_still_refused_without_the_model():
    skills = bakery()
    for question in ("do you sell wedding dresses", "what is the wifi password", "do you do pizza delivery"):
        assert plan(skills, question).say == "UNKNOWN", question


def test_misheard_and_inflected_words_are_matched_to_the_knowledge_words():
    vocabulary = vocabulary_of(["brake", "parking", "colour", "gluten", "owner", "address", "patients", "water",
                                "phones"])
    assert neighbours("breaks", vocabulary)[0] == "brake"
    assert neighbours("barking", vocabulary) == ("parking",)
    assert neighbours("collar", vocabulary) == ("colour",)
    assert neighbours("glutton", vocabulary) == ("gluten",)
    assert neighbours("owns", vocabulary) == ("owner",)
    assert neighbours("wifi", vocabulary) == ()
    assert neighbours("nails", vocabulary) == ()
    assert neighbours("weather", vocabulary) == ()
    assert neighbours("iphones", vocabulary) == ()
    assert sound_key("colour") == sound_key("collar")
    assert not sounds_alike("card", "cars")
    assert neighbours("bark", vocabulary) == ("parking",)  # the stem of an inflected word, misheard
    assert neighbours("card", vocabulary) == ()


def test_a_word_stt_split_in_two_is_joined_when_its_first_half_is_no_word_of_the_facts():
    """"saturn days" (saturdays): "days" is known, "saturn" is not, and together they sound like a fact's word."""
    skills = bakery()
    assert "7 am to 3 pm" in (plan(skills, "are you opened on saturn days").content or "")
    from gateway.knowledge.query import join_split_words

    known = {"day", "days", "saturday", "saturdays", "old", "bread"}.__contains__
    assert join_split_words(["saturn", "days"], known, lambda w: ("saturdays",) if w == "saturndays" else ()) == \
        ["saturndays"]
    assert join_split_words(["old", "days"], known, lambda w: ("olddays",)) == ["old", "days"]


def test_a_misheard_synonym_brings_its_alternatives():
    """"guaranty" is no word of the facts, but sounds like "guarantee", whose synonym "warranty" is."""
    garage = "Facts:\n- Every repair comes with a 12 month warranty on parts and labour.\n- Oil change: 65 dollars."
    knowledge = KnowledgeBase([], texts={"instructions": garage})
    knowledge.build()
    skills = AgentSkills("garage", garage, ToolsConfig({}), knowledge)
    assert "12 month" in (plan(skills, "is there a guaranty on the work").content or "")
    assert plan(skills, "do you sell guitars").say == "UNKNOWN"
    from gateway.knowledge.query import _misheard_synonym

    assert _misheard_synonym("weakdays", lambda w: ())[1] == "weekday"  # the closest key, not "weekend"


def test_a_misheard_question_still_finds_the_fact():
    skills = bakery()
    assert "Baker Street" in (plan(skills, "wear is your a dress").content or "")
    assert "7 dollars" in (plan(skills, "how much is a sour dough love").content or "")
    assert "Fridays" in (plan(skills, "which day do you bake glutton free bred").content or "")


def test_a_follow_up_is_looked_up_with_the_question_before_it_but_a_new_topic_is_not():
    skills = bakery()
    history = [ChatMessage("user", "are you open on saturday"), ChatMessage("assistant", "Yes, 7 am to 3 pm.")]
    assert plan(skills, "and tomorrow", history).say is None
    assert plan(skills, "and do you do nails", history).say == "UNKNOWN"
    # a follow-up naming no topic of its own is about the question before it, though "how much" alone
    # matches the sourdough price
    cake = [ChatMessage("user", "do you make birthday cakes"), ChatMessage("assistant", "Yes, we do.")]
    assert "Birthday cakes" in (plan(skills, "and how much is that", cake).content or "")


def test_instruction_facts_are_indexed_by_agent_skills(tmp_path: Path):
    from gateway.config import parse_config

    config = parse_config({"sip": {"listen": "127.0.0.1:5060"},
                           "agents": {"a": {"type": "conversation", "instructions": BAKERY}}}, source="t.yaml")
    skills = AgentSkills.build(config.agents["a"])
    try:
        assert skills.knowledge is not None and len(skills.knowledge) == 6
        assert skills.retrieve("where can i park") is not None
    finally:
        skills.close()


# -- the fact, and no parroting ----------------------------------------------------------------------


def test_best_sentence_is_the_one_that_answers_the_question():
    facts = "- Hours: Tuesday to Saturday 7 am to 3 pm. Closed on Mondays.\n- Parking: free parking is behind it."
    assert best_sentences(facts, "are you open on monday")[0].text == "Closed on Mondays."
    assert best_sentences(facts, "where do i park")[0].text == "free parking is behind it."
    assert best_sentences("- Children under 12: 20 dollars.", "and for my daughter she's seven")[0].overlap == 1.0


def test_says_fact_wants_the_number_day_or_words_that_answer():
    price = [FactSentence("Sourdough loaf: 7 dollars.", 1.0)]
    assert says_fact("It costs seven dollars.", price, "how much is a sourdough loaf")
    assert not says_fact("We are open Tuesday to Sunday.", price, "how much is a sourdough loaf")
    day = [FactSentence("Gluten free bread is baked on Fridays only.", 1.0)]
    assert says_fact("We bake it on Friday.", day, "which day do you bake gluten free bread")
    assert says_fact("Sixty-five dollars.", [FactSentence("Oil change: 65 dollars.", 1.0)], "oil change price")


def test_parrots_only_counts_the_same_answer_to_another_question():
    hours = "We are open Tuesday to Sunday from 7 am to 3 pm."
    history = [ChatMessage("system", "x"), ChatMessage("user", "when are you open"), ChatMessage("assistant", hours)]
    assert parrots(hours, "how much is a sourdough loaf", history)
    assert parrots("We are open Tuesday to Sunday", "what is your address", history)  # its first clause
    assert not parrots(hours, "when are you open", history)  # asked again
    assert not parrots("Yes, we do.", "do you have parking", history)


def test_the_gate_says_the_fact_when_the_reply_lacks_it_and_passes_a_right_reply_at_once():
    fact = [FactSentence("Sourdough loaf: 7 dollars.", 1.0)]
    right = AnswerGate(fact, "how much is a sourdough loaf", [])
    assert right.feed("A sourdough loaf is 7 dollars.") == ["A sourdough loaf is 7 dollars."]
    assert right.finish() == [] and not right.replaced
    wrong = AnswerGate(fact, "how much is a sourdough loaf", [])
    assert wrong.feed("I'm sorry, but I can't assist with that.") == []
    assert wrong.finish() == ["Sourdough loaf: 7 dollars."] and wrong.replaced


def test_the_gate_believes_a_refusal_when_the_fact_hardly_touches_the_question():
    weak = [FactSentence("Sourdough loaf: 7 dollars.", 0.25)]
    gate = AnswerGate(weak, "do you sell sourdough pizza bases", [])
    assert gate.feed("I'm sorry, I don't know.") == []
    assert gate.finish() == ["I'm sorry, I don't know."]


def test_a_fact_that_hardly_touches_the_question_is_not_said_instead_of_the_reply():
    """"Do you sell used cars?" found "We service all makes of cars" loosely: saying it is a wrong
    answer to a question the business does not answer; the don't-know line is said instead."""
    weak = [FactSentence("We service all makes of cars, including hybrids.", 0.34, loose=True)]
    gate = AnswerGate(weak, "do you sell used cars", [])
    assert gate.feed("Yes, we sell used cars.") == []
    assert gate.finish() == [] and gate.declined
    llm = ScriptedLlm("Yes, we sell used cars.")
    said, out = generate(llm, [ChatMessage("system", "x"), ChatMessage("user", "do you sell used cars")],
                         "do you sell used cars", weak)
    assert said == [ConversationSettings(greeting="Hi.", instructions="x").unknown_answer] and out.declined
    # found by a relevant chunk (misheard words matched), a weakly overlapping fact is still said
    hours = [FactSentence("Saturday: 8 am to noon.", 0.34)]
    gate = AnswerGate(hours, "are you opened on saturn days", [])
    assert gate.feed("Yes, we are open.") == [] and gate.finish() == ["Saturday: 8 am to noon."]


def test_the_facts_are_checked_against_the_question_in_their_own_words():
    skills = bakery()
    assert skills.as_known("are you opened on saturn days") == "are you opened on saturday"
    turn = plan(skills, "are you opened on saturn days")
    assert turn.sentences and turn.sentences[0].overlap >= 0.5 and not turn.sentences[0].loose


class ScriptedLlm:
    """Answers each request with the next scripted reply, word by word."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.prompts: list[list[ChatMessage]] = []

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: object) -> Iterator[str]:
        self.prompts.append(list(messages))
        words = self.replies.pop(0).split(" ")
        for i, word in enumerate(words):
            yield ("" if i == 0 else " ") + word


def generate(llm: ScriptedLlm, messages: list[ChatMessage], said: str,
             sentences: Sequence[FactSentence] = ()) -> tuple[list[str], Generation]:
    settings = ConversationSettings(greeting="Hi.", instructions="x")
    out = Generation()
    generator = Generator(llm, {}, settings, structlog.get_logger("test"), lambda: 0.0)  # type: ignore[arg-type]
    items = [item.text for item in generator.reply(messages, said, None, out, sentences=sentences)]
    assert all(isinstance(i, str) for i in items)
    return items, out


def test_a_long_reply_without_the_fact_is_cut_and_the_fact_said_without_waiting_for_its_end():
    """The gate held every clause of such a reply until the model was done (5-8 s under load)."""
    rambling = ("Thank you for asking, we have a lovely range of breads and cakes here, and everything is "
                "baked fresh every single morning by our team of bakers who love their craft very much.")
    llm = ScriptedLlm(rambling)
    pulled = []

    def counted(messages: Sequence[ChatMessage], **kwargs: object) -> Iterator[str]:
        for piece in ScriptedLlm.stream_chat(llm, messages, **kwargs):
            pulled.append(piece)
            yield piece

    llm.stream_chat = counted  # type: ignore[method-assign]
    fact = [FactSentence("Sourdough loaf: 7 dollars.", 1.0)]
    said, out = generate(llm, [ChatMessage("system", "x"), ChatMessage("user", "how much is a sourdough loaf")],
                         "how much is a sourdough loaf", fact)
    assert " ".join(said) == "Sourdough loaf: 7 dollars." and out.fact_said  # said in pieces, a short one first
    assert len(pulled) < len(rambling.split())  # the model was stopped


def test_a_weak_fact_already_given_for_another_question_is_not_said_again():
    """Garbled words whose best fact is, weakly, the answer the caller just heard: they are asked
    to say it again. Asked again in other words (a strong match), the answer is repeated."""
    parking = "Parking: the Harbour car park is a two minute walk; we validate tickets for 3 hours."
    history = [ChatMessage("system", "x"), ChatMessage("user", "Is there parking nearby?"),
               ChatMessage("assistant", parking)]
    garbled = AnswerGate([FactSentence(parking, 0.25)], "Time done, location, closed.", history)
    assert garbled.feed("The Harbour car park is nearby.") == []
    assert garbled.finish() == [] and garbled.unheard
    again = AnswerGate([FactSentence(parking, 1.0)], "Where can I park my car?", history)
    assert again.feed("Sure.") == []
    assert again.finish() == [parking] and not again.unheard
    fresh = AnswerGate([FactSentence(parking, 0.25)], "Time done, location, closed.", history[:1])
    assert fresh.feed("Sure.") == [] and fresh.finish() == [parking]
    wholesale = "Wholesale for cafes and restaurants: ask for Marco, the head baker."
    tied = AnswerGate([FactSentence(parking, 0.33), FactSentence(wholesale, 0.33)], "wear can i bark my car", history)
    assert tied.feed("Sure.") == [] and tied.finish() == [] and tied.unheard  # not the other weak guess
    settings = ConversationSettings()
    asked = [*history, ChatMessage("user", "Time done, location, closed.")]
    said, _ = generate(ScriptedLlm("We are at the harbour."), asked, "Time done, location, closed.",
                       [FactSentence(parking, 0.25)])
    assert said == [settings.not_understood]


def test_a_parroted_reply_is_replaced_by_the_fact():
    hours = "We are open Tuesday to Sunday from 7 am to 3 pm."
    messages = [ChatMessage("system", "x"), ChatMessage("user", "when are you open"),
                ChatMessage("assistant", hours), ChatMessage("user", "Facts: ...\n\nCaller: what is your address")]
    llm = ScriptedLlm(hours)
    said, out = generate(llm, messages, "what is your address",
                         [FactSentence("Address: 22 Baker Street, on the corner of Elm Road.", 1.0)])
    assert said == ["Address:", "22 Baker Street, on the corner of Elm Road."] and out.fact_said  # a short first piece


def test_a_parroted_reply_without_facts_is_generated_again_without_the_bots_answers():
    hours = "We are open Tuesday to Sunday from 7 am to 3 pm."
    messages = [ChatMessage("system", "x"), ChatMessage("user", "when are you open"),
                ChatMessage("assistant", hours), ChatMessage("user", "tell me about your cakes")]
    llm = ScriptedLlm(hours, "Our cakes are made to order.")
    said, out = generate(llm, messages, "tell me about your cakes")
    assert " ".join(said) == "Our cakes are made to order." and out.regenerated
    assert all(m.role != "assistant" for m in llm.prompts[1])


def test_a_right_reply_streams_unchanged():
    llm = ScriptedLlm("Yes! A sourdough loaf is 7 dollars, baked daily.")
    said, out = generate(llm, [ChatMessage("user", "how much is a sourdough loaf")], "how much is a sourdough loaf",
                         [FactSentence("Sourdough loaf: 7 dollars.", 1.0)])
    assert " ".join(said).startswith("Yes! A sourdough loaf is 7 dollars") and not out.fact_said


def test_history_shapes_drop_or_clip_the_bots_answers_but_never_the_last_message():
    from gateway.conversation.history import HistoryShape, shape_history

    messages = [ChatMessage("system", "s"), ChatMessage("user", "when are you open"),
                ChatMessage("assistant", "We are open Tuesday to Sunday from 7 am to 3 pm."),
                ChatMessage("user", "and the address")]
    assert shape_history(messages, HistoryShape.FULL) == messages
    assert [m.role for m in shape_history(messages, HistoryShape.QUESTIONS)] == ["system", "user", "user"]
    assert shape_history(messages, HistoryShape.CLIPPED)[2].content == "We are open Tuesday to Sunday ..."


def test_says_fact_needs_the_number_and_the_polarity_of_the_fact():
    address = [FactSentence("Address: 48 Mill Road, next to the Shell petrol station.", 1.0)]
    assert not says_fact("We are next to the Shell petrol station.", address, "where exactly are you")
    assert says_fact("We are at 48 Mill Road.", address, "where exactly are you")
    closed = [FactSentence("Closed on Sundays and Mondays.", 1.0)]
    assert not says_fact("Yes, we are open on Monday.", closed, "are you open on monday")
    assert says_fact("No, we are closed on Mondays and Sundays.", closed, "are you open on monday")


def test_only_the_best_matching_sentences_are_accepted_as_the_answer():
    facts = "- Hours: Saturday: 9 am to 4 pm. Closed on Sundays and Mondays."
    best = best_sentences(facts, "what time do you close on saturday")
    assert [s.text for s in best] == ["Saturday: 9 am to 4 pm."]
    assert not says_fact("We are closed on Saturdays and Mondays.", best, "what time do you close on saturday")


def test_a_message_the_caller_did_not_ask_for_is_refused_and_requests_are_not_refused_as_unknown():
    from gateway.conversation.planner import asks_for_action, unasked_tool_call
    from gateway.tools import ToolCall

    call = ToolCall("take_message", {"message": "How much is an oil change?"})
    assert unasked_tool_call(call, "how much do you charge for an oil change")
    assert not unasked_tool_call(call, "can you tell sara i will pick the car up at five")
    assert asks_for_action("could you check on my car the job number is 4417")
    assert asks_for_action("please let kim know that anna will be late")
    assert not asks_for_action("how much is a haircut")


# -- a message the caller dictates ---------------------------------------------------------------------


def test_a_dictated_message_is_taken_in_the_callers_words_without_the_model():
    from gateway.conversation.intents import message_request
    from gateway.tools import take_message_spec

    for said in ("can you tell sara i will pick the car up at five", "please let kim know that anna will be late",
                 "tell the chef wife is allergic to nuts", "tell him i called", "ask tom to call me back"):
        assert message_request(said), said
    # asking to be told, asking to leave one without saying it, or a question, is no message
    for said in ("can you tell me when you open", "let me know the price", "could you tell us if you are open",
                 "can i leave a message for the doctor", "let him know", "can you tell what time it is"):
        assert not message_request(said), said
    knowledge = KnowledgeBase([], texts={"instructions": BAKERY})
    knowledge.build()
    skills = AgentSkills("bakery", BAKERY, ToolsConfig({"take_message": take_message_spec()}), knowledge)
    turn = plan_turn(skills, "please tell  Anna my order is for 12 people, my number is 555 0173",
                     transfer_notice="T.", unknown_answer="U.", message_taken="Taken.")
    assert turn.say == "Taken." and turn.action is not None and turn.action.name == "take_message"
    assert turn.action.arguments == {"message": "please tell Anna my order is for 12 people, my number is 555 0173",
                                     "callback_number": "555 0173"}
    # no take_message tool, or no line to say for it: the model's turn, as before
    assert plan_turn(bakery(), "please tell anna my order is late", transfer_notice="T.", unknown_answer="U.",
                     message_taken="Taken.").say != "Taken."
    assert plan_turn(skills, "please tell anna my order is late", transfer_notice="T.", unknown_answer="U.").say is None


def test_a_lookup_asked_for_by_its_number_calls_the_tool_without_the_model():
    from gateway.conversation.intents import numbered_lookup
    from gateway.tools import ToolSpec

    specs = {"repair_status": ToolSpec("repair_status", "by job number", {"job_number": {"type": "string"}}),
             "order_status": ToolSpec("order_status", "by order id", {"order_id": {"type": "string", "maxLength": 6}})}
    asked = numbered_lookup("could you check on my car the job number is 4417", specs)
    assert asked is not None and asked.arguments == {"job_number": "4417"}
    assert numbered_lookup("where is my order, it's 123 456", specs).arguments == {"order_id": "123456"}
    for said in ("how many jobs do you do a day", "my number is 555 0173", "i have a job for 3 people",
                 "my order 12345678 is late"):  # no number, not the kind's, too short, or the spec refuses it
        assert numbered_lookup(said, specs) is None, said
    knowledge = KnowledgeBase([], texts={"instructions": BAKERY})
    knowledge.build()
    skills = AgentSkills("garage", BAKERY, ToolsConfig(specs), knowledge)
    turn = plan_turn(skills, "the job number is 4417 can you check it", transfer_notice="T.", unknown_answer="U.",
                     acknowledgement="One moment.")
    assert turn.say == "One moment." and turn.action.name == "repair_status"
    assert plan_turn(skills, "the job number is 4417", transfer_notice="T.", unknown_answer="U.").say is None


def test_a_weak_fact_tied_with_another_is_a_guess_and_not_said():
    courtesy = "A courtesy car is free for repairs that take more than one day."
    makes = "We repair all makes of cars and vans, including hybrids."
    tied = AnswerGate([FactSentence(courtesy, 0.33), FactSentence(makes, 0.33)], "do you sell used cars", [])
    assert tied.feed("Yes, we have a courtesy car.") == [] and tied.finish() == [] and tied.declined
    alone = AnswerGate([FactSentence(courtesy, 0.33)], "do you sell used cars", [])
    assert alone.feed("Sure.") == [] and alone.finish() == [courtesy] and not alone.declined
    strong = AnswerGate([FactSentence(courtesy, 0.67), FactSentence(makes, 0.67)], "do you repair cars", [])
    assert strong.feed("Sure.") == [] and strong.finish() == [courtesy]  # a strong tie: the first is an answer
