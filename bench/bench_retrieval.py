"""Measure gateway.knowledge: index build time, refresh cost and retrieval latency and quality.

Run from the repository root::

    python bench/bench_retrieval.py [--rounds 10] [--seed 1] [--db-file]

A synthetic but realistic knowledge base for a veterinary clinic (40 Markdown files: one per
service with sections on what it is, prices per animal, duration, preparation and aftercare,
plus staff pages and policies; about 220 chunks) is written to a temporary folder. Build time is
the median of 5 `KnowledgeBase(...).build()` runs. Retrieval latency is the wall time of
`retrieve(question)` (its own `elapsed_ms`) over 169 questions: answerable ones generated from
the same facts (some with speech-to-text damage) and off-topic ones. "Cold" is the first time
each question is asked after a build (empty term cache), "warm" the further `--rounds` rounds.
Quality: share of answerable questions whose best chunk comes from the expected file, and share
of off-topic questions that wrongly found something.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.knowledge import KnowledgeBase, format_facts  # noqa: E402

CLINIC = "Riverside Veterinary Clinic"
ANIMALS = ("dog", "cat", "rabbit")
SERVICES = {  # name: (what it is, minutes, preparation, aftercare)
    "Vaccinations": ("protect your pet against rabies, distemper and parvovirus; boosters are due every year", 20,
                     "bring the vaccination booklet", "mild tiredness for a day is normal"),
    "Neutering": ("a routine operation under general anaesthetic that prevents unwanted litters", 90,
                  "no food after 10 pm the evening before", "keep the cone on for ten days and stop licking"),
    "Dental cleaning": ("scaling and polishing of the teeth under sedation, with extractions if needed", 60,
                        "no breakfast on the day", "soft food for three days"),
    "Microchipping": ("a chip the size of a rice grain placed under the skin for identification", 10,
                      "nothing special", "register the chip number online with your address"),
    "X-ray": ("digital radiographs of bones, chest or abdomen, results the same day", 30,
              "no food for six hours", "the vet calls you with the results"),
    "Ultrasound": ("scans of the heart, abdomen or pregnancy without radiation", 40,
                   "the belly may be shaved, no food for six hours", "no restrictions"),
    "Blood tests": ("a laboratory panel checking kidneys, liver, thyroid and blood count", 15,
                    "fasting for eight hours gives the clearest results", "results arrive within two days"),
    "Grooming": ("bath, brushing, haircut and ear cleaning by our groomer", 75,
                 "walk your dog before the appointment", "brush the coat twice a week"),
    "Nail trimming": ("clipping of overgrown claws, including dew claws", 10,
                      "nothing special", "check the nails every month"),
    "Flea treatment": ("spot-on or tablet treatment against fleas and ticks for the whole household", 15,
                       "tell us the weight of your pet", "treat every pet in the house and wash the bedding"),
    "Deworming": ("tablets against roundworms and tapeworms, recommended every three months", 10,
                  "nothing special", "repeat the dose after three months"),
    "Allergy testing": ("skin or blood tests to find what causes itching and rashes", 45,
                        "stop antihistamines one week before", "we discuss a diet or medication plan"),
    "Puppy classes": ("six weekly group lessons on socialising, lead walking and basic commands", 60,
                      "the first vaccination must be done", "practise ten minutes every day"),
    "Boarding": ("overnight stays in heated kennels with two walks a day", 0,
                 "bring food for the whole stay and the vaccination booklet", "pick-up until 6 pm"),
    "Physiotherapy": ("hydrotherapy on an underwater treadmill and massage after injuries or surgery", 45,
                      "bring a towel", "gentle walks only on the day"),
    "Euthanasia": ("a calm, private farewell in a quiet room or at your home", 60,
                   "you can stay with your pet the whole time", "we offer cremation and a paw print"),
    "Eye examinations": ("checks for cataracts, glaucoma and dry eye with a slit lamp", 30,
                         "no eye drops on the day", "follow the drop schedule exactly"),
    "Skin biopsies": ("a small tissue sample from a lump or rash, sent to the laboratory", 30,
                      "no food for six hours if sedation is needed", "keep the stitches dry for ten days"),
    "Travel certificates": ("pet passports and health certificates for travel abroad", 30,
                            "book at least four weeks before travelling", "keep the passport with you"),
    "Weight clinic": ("monthly weigh-ins with a nurse and a diet plan for overweight pets", 20,
                      "bring a list of everything your pet eats", "weigh the food, do not guess"),
    "Senior checkups": ("a yearly health check for pets over eight years with blood and urine tests", 40,
                        "bring a fresh urine sample", "we send a written summary"),
    "Pregnancy care": ("ultrasound confirmation, nutrition advice and birth planning for breeding animals", 30,
                       "note the mating date", "call us at once if labour takes longer than two hours"),
    "Exotic pets": ("care for rabbits, guinea pigs, birds and reptiles by our exotics vet", 30,
                    "bring the animal in its own cage with some bedding", "keep the enclosure warm"),
    "Laser therapy": ("cold laser sessions that ease arthritis pain and speed up wound healing", 20,
                      "nothing special", "most pets need six sessions"),
    "Orthopaedic surgery": ("cruciate ligament repair, fracture fixation and hip surgery", 180,
                            "no food after 10 pm the evening before", "strict cage rest for six weeks"),
}
STAFF = {
    "Dr. Alvarez": ("small animal surgery", "Monday, Tuesday and Thursday"),
    "Dr. Okafor": ("internal medicine and blood tests", "Monday to Wednesday"),
    "Dr. Lindqvist": ("exotic pets such as rabbits, birds and reptiles", "Wednesday and Friday"),
    "Dr. Brennan": ("dermatology and allergies", "Tuesday and Friday"),
    "Dr. Haddad": ("dentistry", "Thursday and Friday"),
    "Nurse Kim": ("weight clinic and puppy classes", "Monday to Friday"),
}
POLICIES = {
    "Opening hours": [
        ("Weekdays", "The clinic is open Monday to Friday from 8 am to 7 pm."),
        ("Weekends", "On Saturday we are open from 9 am to 1 pm. On Sunday the clinic is closed."),
        ("Holidays", "On public holidays only the emergency service is available."),
    ],
    "Location": [
        ("Address", f"{CLINIC} is at 48 Mill Road, opposite the river bridge and the old mill."),
        ("Parking", "There are eight free parking spaces in front of the clinic and more on Mill Road."),
        ("Public transport", "Bus lines 4 and 11 stop at Mill Bridge, two minutes' walk away."),
    ],
    "Emergencies": [
        ("Night service", "Outside opening hours call the emergency number 555 0199; a vet is on call all night."),
        ("What is an emergency", "Poisoning, heavy bleeding, breathing problems, seizures and a swollen belly "
                                 "are emergencies: come at once and call on the way."),
    ],
    "Payment": [
        ("Methods", "We accept cash, debit cards and all major credit cards. Payment is due at the end of the visit."),
        ("Pet insurance", "We bill PetPlan and Agria insurance directly; for other insurers you pay and claim back."),
        ("Instalments", "For treatments over 500 dollars you can pay in three monthly instalments."),
    ],
    "Appointments": [
        ("Booking", "Book an appointment by phone or online. Same-day appointments are kept free every morning."),
        ("Cancellations", "Please cancel at least 24 hours in advance; a missed appointment costs 30 dollars."),
        ("New clients", "New clients are welcome. Bring previous medical records and the vaccination booklet."),
    ],
    "Pharmacy": [
        ("Repeat prescriptions", "Order repeat prescriptions two days in advance by phone or email."),
        ("Pet food", "We sell prescription diets for kidney, weight and allergy problems at the front desk."),
    ],
    "About us": [
        ("History", f"{CLINIC} was founded in 1998 and moved to Mill Road in 2015."),
        ("Team", "Five vets, four nurses and two receptionists care for about 6000 pets."),
    ],
    "Visitors": [
        ("Waiting room", "Dogs wait on the left and cats on the right, so the animals stay calm."),
        ("Accessibility", "The clinic has step-free access and a wheelchair-accessible toilet."),
    ],
    "Home visits": [
        ("Area", "Home visits are possible within ten miles of the clinic on weekday afternoons."),
        ("Price", "A home visit costs 80 dollars plus the treatment."),
    ],
}
OFF_TOPIC = [
    "Do you sell car insurance?", "Can I order a pizza?", "What's the weather like tomorrow?",
    "Do you repair bicycles?", "Do you have Wi-Fi?", "Can you book me a flight to Madrid?",
    "How much is a haircut for a man?", "Do you do tax returns?", "Is the swimming pool open?",
    "Can I rent a boat?", "What's the score of the football game?", "Do you fix iPhones?",
    "How much is a taxi to the airport?", "Do you sell concert tickets?", "I want to change my mobile plan",
    "Can you recommend a good restaurant?", "Do you install solar panels?", "What's your best mortgage rate?",
    "Um, hello? Is this the pharmacy for humans?", "Do you do car washes?",
]
_GOOD_TO_KNOW = (
    "Good to know: most owners ask whether {x} is stressful. Our team uses calm handling, treats and pheromone "
    "sprays, and we book longer slots so nobody is rushed. If your {a} is anxious, tell the receptionist when you "
    "book, and we can give a mild sedative beforehand. Owners can usually stay close by, and we explain every step "
    "before we start so there are no surprises. We also send a short written summary by email after the visit, "
    "together with the invoice and the date of the next check."
)


@dataclass(frozen=True)
class Question:
    text: str
    source: str | None  # file stem expected for the best chunk; None: off-topic
    section: str = ""  # ... and the last heading of its path, if the question names one


PHRASINGS = {  # (question templates, expected section); {x}: the service, {a}: an animal
    "Prices": ("How much does {x} cost for a {a}?", "what do you charge for {x}", "um how much is {x} for my {a}",
               "what's the price of {x} for a {a}"),
    "Duration": ("How long does the {x} take?", "how many minutes is the {x}", "how long will {x} last"),
    "Before the visit": ("What should I do before the {x}?", "how do I prepare my {a} for {x}",
                         "anything to do before {x}?"),
    "Aftercare": ("Um, what do I do after {x}?", "what aftercare is needed after {x}",
                  "my {a} just had {x}, what now?"),
    "Booking": ("Can I book {x} with the vet?", "when can I get an appointment for {x}",
                "who does the {x}?"),
}


def _slug(name: str) -> str:
    return name.lower().replace(" ", "-").replace(".", "")


def write_knowledge(folder: Path, rng: random.Random) -> list[Question]:
    """Write the clinic's 40 files into `folder`; return the questions with their expected files."""
    questions: list[Question] = []
    for name, (what, minutes, before, after) in SERVICES.items():
        slug = _slug(name)
        prices = {animal: rng.randrange(20, 400, 5) for animal in ANIMALS}
        vet = rng.choice(list(STAFF))
        duration = f"about {minutes} minutes" if minutes else "as long as you need"
        text = (
            f"# {name}\n\n{name}: {what}. {_GOOD_TO_KNOW.format(x=name.lower(), a=rng.choice(ANIMALS))}\n\n"
            f"## Prices\n\n" + "".join(f"- {animal.title()}: {price} dollars\n" for animal, price in prices.items())
            + f"\nPrices include the consultation. Medication is charged separately.\n\n"
            f"## Duration\n\nThe {name.lower()} takes {duration}. You can wait in the waiting room.\n\n"
            f"## Before the visit\n\nPlease {before}. Bring your pet on a lead or in a carrier.\n\n"
            f"## Aftercare\n\nAfter the {name.lower()}: {after}. Call us if anything worries you.\n\n"
            f"## Booking\n\n{name} is done by {vet} or a colleague. Book by phone; most weeks there are "
            f"free slots within {rng.randrange(2, 10)} days.\n"
        )
        (folder / f"{slug}.md").write_text(text)
        for section, templates in PHRASINGS.items():
            if minutes or section != "Duration":
                text = rng.choice(templates).format(x=name.lower(), a=rng.choice(ANIMALS))
                questions.append(Question(text, slug, section))
    for name, (field, days) in STAFF.items():
        slug = _slug(name)
        text = (
            f"# {name}\n\n{name} works at {CLINIC} on {days} and specialises in {field}.\n\n"
            f"## Background\n\n{name} trained at the veterinary school in Edinburgh and has twelve years of "
            f"experience. Ask for {name} when you book if you want to see the same vet every time.\n\n"
            f"## Languages\n\n{name} speaks English and {rng.choice(['Spanish', 'French', 'German', 'Arabic'])}.\n"
        )
        (folder / "staff").mkdir(exist_ok=True)
        (folder / "staff" / f"{slug}.md").write_text(text)
        questions.append(Question(f"Which days does {name.replace('Dr.', 'doctor')} work?", slug, name))
    for title, sections in POLICIES.items():
        slug = _slug(title)
        body = "".join(f"## {heading}\n\n{text}\n\n" for heading, text in sections)
        (folder / f"{slug}.md").write_text(f"# {title}\n\n{body}")
    questions += [
        Question("What are your opening hours?", "opening-hours"),
        Question("Are you open on Sunday?", "opening-hours"),
        Question("Where are you?", "location"),
        Question("Is there parking?", "location"),
        Question("Which bus goes to the clinic?", "location"),
        Question("My dog ate rat poison, what do I do?", "emergencies"),
        Question("Can I pay by credit card?", "payment"),
        Question("Do you bill PetPlan directly?", "payment"),
        Question("Can I pay in instalments?", "payment"),
        Question("How do I cancel an appointment?", "appointments"),
        Question("Do you take new clients?", "appointments"),
        Question("Can I order a repeat prescription?", "pharmacy"),
        Question("Do you do home visits?", "home-visits"),
        Question("How much is a home visit?", "home-visits"),
        Question("Is the clinic wheelchair accessible?", "visitors"),
        Question("how much is micro chipping for a cat", "microchipping"),
        Question("what are your opening ours on saturday", "opening-hours"),
        Question("do you do vaccina tions for rabbits", "vaccinations"),
        Question("physio therapy for my dog after surgery", "physiotherapy"),
    ]
    (folder / ".draft-notes.md").write_text("# Draft\n\nHidden files are not indexed.\n")
    (folder / "logo.png").write_bytes(b"\x89PNG")
    return questions + [Question(text, None) for text in OFF_TOPIC]


def percentiles(values_ms: list[float]) -> str:
    a = np.array(values_ms)
    return f"{np.percentile(a, 50):.3f} / {np.percentile(a, 95):.3f} / {a.max():.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="warm rounds over all questions")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--db-file", action="store_true", help="index in a file in the temp folder, not in memory")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "knowledge"
        folder.mkdir()
        questions = write_knowledge(folder, random.Random(args.seed))
        db_path = Path(tmp) / "index.sqlite" if args.db_file else ":memory:"
        files = sum(1 for p in folder.rglob("*.md") if not p.name.startswith("."))

        build_ms = []
        for _ in range(5):
            kb = KnowledgeBase([folder], db_path)
            started = time.perf_counter()
            n_chunks = kb.build()
            build_ms.append(1000 * (time.perf_counter() - started))
            kb.close()
        kb = KnowledgeBase([folder], db_path)
        kb.build()

        cold = [kb.retrieve(q.text) for q in questions]
        warm_ms = [kb.retrieve(q.text).elapsed_ms for _ in range(args.rounds) for q in questions]

        started = time.perf_counter()
        for _ in range(100):
            kb.refresh()
        refresh_ms = 1000 * (time.perf_counter() - started) / 100
        edited = folder / "grooming.md"
        edited.write_text(edited.read_text() + "\nGrooming for cats is on Fridays only.\n")
        started = time.perf_counter()
        changes = kb.refresh()
        edit_ms = 1000 * (time.perf_counter() - started)
        kb.close()

    answerable = [(q, r) for q, r in zip(questions, cold, strict=True) if q.source]
    off_topic = [(q, r) for q, r in zip(questions, cold, strict=True) if not q.source]
    top1 = sum(r.found and r.chunks[0].source.stem == q.source for q, r in answerable)
    sectioned = [(q, r) for q, r in answerable if q.section]
    top1_section = sum(r.found and r.chunks[0].heading.endswith(q.section) for q, r in sectioned)
    found = sum(r.found for _, r in answerable)
    false_found = [q.text for q, r in off_topic if r.found]
    chunk_words = [len(c.text.split()) for r in cold for c in r.chunks]

    print("## Knowledge retrieval (gateway/knowledge)\n")
    print(
        f"Knowledge base: {files} Markdown files of a synthetic veterinary clinic, {n_chunks} chunks "
        f"(index {'in a file' if args.db_file else 'in memory'}); {len(questions)} questions "
        f"({len(answerable)} answerable, {len(off_topic)} off-topic), seed {args.seed}.\n"
    )
    print("| measure | value |\n|---|---:|")
    print(f"| build (median of 5), ms | {statistics.median(build_ms):.1f} |")
    print(f"| refresh, nothing changed (stat of {files} files), ms | {refresh_ms:.3f} |")
    print(f"| refresh after editing one file, ms | {edit_ms:.2f} ({len(changes.modified)} file re-indexed) |")
    print(f"| retrieve, cold, p50 / p95 / max, ms | {percentiles([r.elapsed_ms for r in cold])} |")
    print(f"| retrieve, warm ({args.rounds} rounds), p50 / p95 / max, ms | {percentiles(warm_ms)} |")
    print(f"| answerable: found | {found}/{len(answerable)} |")
    print(f"| answerable: best chunk from the expected file | {top1}/{len(answerable)} |")
    print(f"| ... and from the expected section (where one is expected) | {top1_section}/{len(sectioned)} |")
    print(f"| off-topic: wrongly found | {len(false_found)}/{len(off_topic)} |")
    print(f"| words per returned chunk, mean | {statistics.mean(chunk_words):.0f} |")
    if false_found:
        print("\nOff-topic questions that found something: " + "; ".join(false_found))
    missed = [
        f"{q.text} ({r.chunks[0].heading if r.found else 'nothing'})"
        for q, r in answerable
        if not (r.found and r.chunks[0].source.stem == q.source and r.chunks[0].heading.endswith(q.section))
    ]
    if missed:
        print("\nAnswerable questions whose best chunk was elsewhere or missing: " + "; ".join(missed))
    example = next(r for q, r in answerable if q.source == "neutering")
    print(f"\nExample: {example.question!r} ->\n\n```\n{format_facts(example)}\n```")
    print(
        "\nHow it was measured: `time.perf_counter()` around `build()`; `Retrieval.elapsed_ms` (taken\n"
        "inside `retrieve()`, the whole call) for latency, single-threaded on this machine. Cold is\n"
        "each question's first lookup after a build, warm the repeats (cached term lookups).\n"
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end: the max is scheduler noise\n"
        "when the machine is busy."
    )


if __name__ == "__main__":
    main()
