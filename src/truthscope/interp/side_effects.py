"""What an intervention costs the language model on text where nothing true or false is at stake.

One neutral corpus and two numbers, shared by every intervention (steering, neuron suppression):

    lm_loss  mean next-token negative log-likelihood, in nats per token, of the (edited) model,
             averaged over ALL predicted tokens of the corpus (token-weighted, not per text)
    kl       mean KL(unmodified || modified) of the next-token distributions, averaged over the
             same tokens: 0 for the unmodified model, the damage an edit does everywhere else

The corpus (`NEUTRAL_CORPUS`) is plain descriptive and narrative English written for this purpose:
household routines, small fictional scenes, directions and descriptions, about nothing TruthfulQA
asks and with no claims a model could get wrong, so a loss increase here is damage, not a changed
opinion. Each paragraph is its own sequence (the tokenizer's own prefix token, if any, then the
text), so the numbers do not depend on a context window. It is 36 paragraphs, about 2,000 words;
SmolLM2's tokenizer makes 2,292 predicted tokens of them (SmolLM2-135M: 3.741 nats per token). Edits
are compared on the same tokens, so differences between conditions are far more precise than the
loss itself (whose token-to-token spread is a few nats).

    costs = neutral_costs(lm)                                   # the unmodified model (kl = 0)
    costs = neutral_costs(lm, lambda: edit(lm.model, edits))    # under an edit
    costs = neutral_costs(lm, edits)                            # the same, edits as a dict

The unmodified model's next-token distributions (the `NeutralBaseline`) are computed once per model
and corpus and cached; where keeping them would take more than `max_cached_bytes` (large vocabulary
and corpus), only the loss is cached and the unmodified pass is rerun next to each edited one.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from truthscope.interp.hooks import edit as edit_hooks

EditContext = Callable[[], AbstractContextManager] | Mapping | None

NEUTRAL_CORPUS: tuple[str, ...] = (
    "The kettle clicked off and the kitchen went quiet. She poured the water over the tea leaves, waited a few "
    "minutes, and carried the cup to the table by the window, where the morning light fell across an open book. "
    "Outside, a neighbour was sweeping the steps, and somewhere down the street a radio played an old song.",
    "To repot a houseplant, water it the day before, then tip the pot on its side and ease the root ball out. "
    "Loosen the outer roots with your fingers, set the plant in a slightly larger pot, and fill around it with "
    "fresh soil, pressing gently as you go. Water it once more and keep it out of strong sun for a week.",
    "The train left the station a little after nine. Fields slid past the windows, then a row of houses, a "
    "river, a bridge and a long line of trees. Most passengers read or slept; a child in the front seat counted "
    "the cows out loud and lost count somewhere after forty, then started again from one.",
    "Our team meeting is moved to Thursday at two o'clock in the small conference room. Please bring your notes "
    "on the spring schedule, and let me know by Wednesday evening if you cannot attend so that we can plan "
    "around it. Coffee will be provided, and we should be finished well before four.",
    "He laced his boots, checked the map once more and set off along the path that followed the stream. After "
    "an hour the trees thinned out, the path grew steeper, and the sound of the water faded behind him. At the "
    "top he sat on a flat stone, ate an apple and watched the clouds move slowly over the valley.",
    "Preheat the oven, then grease a baking tin and line it with paper. Beat the butter and sugar until pale, "
    "add the eggs one at a time, fold in the flour, and spread the mixture evenly before baking it until "
    "golden. Leave the cake in the tin for ten minutes, then turn it out onto a rack to cool.",
    "The library on the corner opens at nine on weekdays. Inside, the floor creaks near the door, the reading "
    "room smells of paper and polish, and a tall clock ticks above the returns desk. On rainy afternoons every "
    "chair by the radiator is taken, and the librarian keeps a jar of pencils for anyone who forgets one.",
    "She packed a small bag for the weekend: two shirts, a sweater, a pair of walking shoes and a paperback "
    "novel. At the last moment she added an umbrella, then took it out again, then put it back. By noon the bus "
    "had climbed into the hills, and she could see the lake shining between the pines.",
    "To clean a bicycle chain, shift onto the smallest cog and hold a rag around the lower run of the chain. "
    "Turn the pedals backwards so that the chain runs through the rag, then add a drop of oil to each link, "
    "turn the pedals a few more times and wipe away whatever oil is left on the outside.",
    "The market opened early on Saturday. Stalls of apples, pears and late plums stood beside tables of bread, "
    "cheese and jars of honey. A man with a cart sold hot chestnuts in paper cones, and a woman in a green coat "
    "played the accordion near the fountain while children dropped coins into her hat.",
    "Cut the onions into thin slices and cook them slowly in a wide pan with a little oil and a pinch of salt. "
    "Stir now and then, lowering the heat if they start to catch, until they are soft and brown. This takes "
    "longer than most recipes admit, often forty minutes or more, but it cannot really be hurried.",
    "The old house at the end of the lane had a blue door and a garden full of roses. In summer the windows "
    "stood open, and from the road you could hear someone practising scales on a piano, always the same ones, "
    "slowly at first and then faster, until a kettle whistled and the playing stopped.",
    "When you arrive, take the lift to the third floor and turn left. The office is the second door on the "
    "right, opposite the printer. If nobody answers, leave the parcel with the front desk and write your name "
    "and the time in the book beside the telephone, and we will collect it in the afternoon.",
    "They spent the afternoon painting the fence. Tom did the long side by the road, and his sister did the "
    "short side by the shed, which she said was harder because of the nettles. By five o'clock both of them had "
    "white paint in their hair, and the dog had a white stripe along its tail.",
    "Fold the paper in half lengthwise, open it again, and fold each corner in to meet the centre line. Fold the "
    "new edges in once more, then fold the whole sheet along the middle so that the folds are on the outside. "
    "Turn down each side to make the wings, and the paper plane is ready to fly.",
    "The waiting room was warm and almost empty. A man in a grey suit read the same page of a newspaper for a "
    "long time, a girl swung her legs and hummed, and the receptionist typed quickly, glancing up whenever the "
    "door opened. On the wall a poster showed a sailing boat on a calm blue sea.",
    "Every evening the caretaker walked through the school, closing windows and switching off lights. He knew "
    "which doors stuck and which floorboards creaked, and he always stopped in the music room to straighten the "
    "chairs. When he had locked the last door, he stood for a moment in the empty yard before going home.",
    "Sort the laundry into lights and darks, and check the pockets for tissues and coins. Wash the towels on a "
    "warm setting and the shirts on a cool one, and hang everything up as soon as the machine stops so that it "
    "does not crease. On a dry day the sheets can go outside on the line.",
    "The boat rocked gently against the jetty while they loaded the picnic basket, the blankets and a bag of "
    "bread for the ducks. Grandfather rowed, slowly and without speaking, and the others trailed their hands "
    "in the water. Halfway across the lake they stopped, and for a while nobody said anything at all.",
    "To set up the new printer, take it out of the box and remove all the orange tape. Plug it in, switch it "
    "on and wait until the light stops blinking. Open the front cover, slide in the ink cartridges until they "
    "click, close the cover and load a few sheets of paper into the tray before printing a test page.",
    "Snow fell all night, and in the morning the street was quiet and white. The first footprints led from a "
    "house with a red door to the bakery on the corner and back again. By nine the children were out with "
    "sledges, and by noon someone had built a snowman with a carrot nose and a borrowed scarf.",
    "The workshop was small but tidy. Chisels hung in a row above the bench, each in its own slot, and jars of "
    "screws stood on a shelf, sorted by size. She swept the shavings into a corner, clamped a board to the bench "
    "and began, very carefully, to mark out the joints for a drawer.",
    "Dear Sam, thank you for the lovely afternoon on Sunday. The walk by the canal was just what I needed, and "
    "the soup afterwards was even better. I have written down the name of the bookshop you mentioned and will "
    "look for it next time I am in town. Let us meet again before the end of the month.",
    "At the swimming pool the morning lanes were for slow, medium and fast swimmers. He chose the slow lane, "
    "swam twenty lengths of steady breaststroke, rested at the shallow end and watched the light ripple on the "
    "tiles below. Then he showered, dressed and walked home with his hair still wet.",
    "The community garden had twelve plots, each with a wooden sign. Some were neat rows of beans and lettuce, "
    "others a tangle of squash vines and sunflowers. On Sunday mornings the gardeners traded seedlings and "
    "advice by the water butt, and whoever arrived first unlocked the shed and put out the watering cans.",
    "Measure the wall twice before you drill. Mark the height of the shelf with a pencil, hold the spirit level "
    "against the line and adjust it until the bubble sits in the middle. Drill the holes, push in the wall plugs, "
    "then screw the brackets in place and lay the shelf across them.",
    "The café was busy at lunchtime. Plates of soup and sandwiches came out of the kitchen two at a time, the "
    "coffee machine hissed, and the owner wrote the afternoon specials on the blackboard in careful chalk "
    "letters. By three o'clock only a student with a laptop and an old man with a crossword remained.",
    "He opened the drawer and found everything he had been looking for: the spare keys, a roll of string, two "
    "birthday candles, a torch with no batteries and the instruction booklet for a toaster they no longer owned. "
    "He took the keys, closed the drawer and decided to sort the rest another day.",
    "To plant tulip bulbs, dig a hole about three times as deep as the bulb is tall. Set the bulb in it with the "
    "pointed end facing up, cover it with soil and press down lightly. Plant them in groups rather than in a "
    "single line, and water them well once they are all in the ground.",
    "The children built a den under the stairs out of blankets, cushions and a clothes horse. They took in a "
    "torch, a packet of biscuits and a pile of comics, and they stayed there all afternoon, whispering, while "
    "the rain drummed on the skylight above the landing.",
    "Please remember that the car park will be closed on Monday while the lines are repainted. Staff who usually "
    "drive may park in the side street or use the bus, which stops right outside the main entrance every twenty "
    "minutes. The car park will open again on Tuesday morning.",
    "The band set up in the corner of the hall: a drum kit, two guitars, a keyboard on a folding stand and a "
    "tangle of cables taped to the floor. They played a few notes to check the sound, adjusted the microphones, "
    "and waited for the guests to finish their dinner before starting the first song.",
    "In the evening the harbour grew calm. Fishing boats came in one by one, their engines slowing as they "
    "passed the lighthouse, and the crews unloaded boxes onto the quay while gulls circled overhead. Later the "
    "lamps came on along the sea wall, and the water turned dark and still.",
    "Knead the dough on a floured surface for about ten minutes, until it is smooth and springs back when you "
    "press it. Put it in a bowl, cover it with a cloth and leave it somewhere warm until it has doubled in size. "
    "Then shape it into a loaf, let it rise again and bake it until the crust is brown.",
    "The bookshop was narrow and deep, with shelves from the floor to the ceiling and a ladder on rails. A cat "
    "slept in the window among the travel guides, and the owner sat behind a desk piled with parcels, writing "
    "prices in pencil on the first page of each second-hand book.",
    "After supper they cleared the table and got out the jigsaw puzzle, a thousand pieces of a mountain village "
    "in autumn. They did the edges first, then the red roofs, then the church tower, and left the sky until "
    "last because it was all the same pale blue and nobody wanted to start it.",
)


@dataclass(frozen=True)
class NeutralBaseline:
    """The unmodified model on the corpus: its loss and, when cached, its next-token log-distributions."""

    lm_loss: float
    tokens: int
    logprobs: tuple[torch.Tensor, ...] | None  # per text [len - 1, vocab] on the model's device; None: recompute


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # torch module -> {corpus key: baseline}


def corpus_ids(lm, texts: Sequence[str] = NEUTRAL_CORPUS) -> list[list[int]]:
    """Each text tokenised as the model's tokenizer does it on its own (prefix token included)."""
    return [list(lm.tokenizer(text).input_ids) for text in texts]


def corpus_tokens(lm, texts: Sequence[str] = NEUTRAL_CORPUS) -> int:
    """The number of predicted tokens the averages run over."""
    return sum(len(ids) - 1 for ids in corpus_ids(lm, texts))


def _log_distributions(lm, ids: Sequence[int]) -> torch.Tensor:
    with torch.inference_mode():
        x = torch.tensor([list(ids)], device=lm.device)
        return torch.log_softmax(lm.model(input_ids=x).logits[0, :-1].float(), dim=-1)


def _context(lm, edit_context: EditContext) -> Callable[[], AbstractContextManager]:
    if edit_context is None:
        return nullcontext
    if isinstance(edit_context, Mapping):
        edits = dict(edit_context)
        return lambda: edit_hooks(lm.model, edits)
    return edit_context


def _key(lm, texts: Sequence[str]) -> str:
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    return f"{digest}:{lm.device}"


def neutral_baseline(
    lm, texts: Sequence[str] = NEUTRAL_CORPUS, *, max_cached_bytes: int = 2 << 30, refresh: bool = False
) -> NeutralBaseline:
    """The unmodified model's loss on `texts` (and its distributions, when they fit in
    `max_cached_bytes`), computed once per model and corpus. Call it with no edit active."""
    per_model = _CACHE.setdefault(lm.model, {})
    key = _key(lm, texts)
    if key in per_model and not refresh:
        return per_model[key]
    ids = corpus_ids(lm, texts)
    tokens = sum(len(x) - 1 for x in ids)
    vocab = int(lm.model.get_output_embeddings().weight.shape[0])
    keep = tokens * vocab * 4 <= max_cached_bytes
    total, kept = 0.0, []
    for x in ids:
        base = _log_distributions(lm, x)
        total += float(_nll(base, x).sum())
        if keep:
            kept.append(base)
    baseline = NeutralBaseline(total / tokens, tokens, tuple(kept) if keep else None)
    per_model[key] = baseline
    return baseline


def _nll(logprobs: torch.Tensor, ids: Sequence[int]) -> torch.Tensor:
    target = torch.tensor(list(ids[1:]), device=logprobs.device)
    return -logprobs.gather(1, target[:, None])[:, 0].double()


def neutral_costs(
    lm, edit_context: EditContext = None, baseline: NeutralBaseline | None = None, texts: Sequence[str] = NEUTRAL_CORPUS
) -> dict:
    """{"lm_loss", "kl", "tokens"} of `lm` (a `HuggingFaceModel`) on `texts` under `edit_context`:
    None (the unmodified model), a factory of context managers that applies the edit (called once
    per text), or a dict of `interp.hooks.edit` edits. Both numbers are means over every predicted
    token of the corpus; `baseline` defaults to the cached `neutral_baseline(lm, texts)`."""
    baseline = baseline or neutral_baseline(lm, texts)
    make = _context(lm, edit_context)
    ids = corpus_ids(lm, texts)
    loss_sum, kl_sum, tokens = 0.0, 0.0, 0
    for k, x in enumerate(ids):
        base = baseline.logprobs[k] if baseline.logprobs is not None else _log_distributions(lm, x)
        with make():
            edited = _log_distributions(lm, x)
        loss_sum += float(_nll(edited, x).sum())
        kl_sum += float((base.exp() * (base - edited)).sum(-1).double().sum())
        tokens += len(x) - 1
    if tokens != baseline.tokens:
        raise ValueError(f"the baseline covers {baseline.tokens} tokens, the corpus {tokens}: another corpus or model")
    return {"lm_loss": loss_sum / tokens, "kl": max(kl_sum / tokens, 0.0), "tokens": tokens}
