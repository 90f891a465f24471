"""The offline annotator on short non-news text: sayings, first-person posts, chat-like replies."""

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from annotate import text_features
from annotate.config import OfflineConfig
from annotate.format import AnnotationSchema
from annotate.offline import OfflineAnnotator, naming_words

SAYINGS = [
    "“Don't cry because it's over, smile because it happened.”\n― Dr. Seuss",
    "“Be yourself; everyone else is already taken.”\n― Oscar Wilde",
    "“I'm selfish, impatient and a little insecure.”\n― Marilyn Monroe",
    "“You only live once, but if you do it right, once is enough.”\n― Mae West",
    "“In three words I can sum up everything I've learned about life: it goes on.” ― Robert Frost",
    "“If you tell the truth, you don't have to remember anything.” - Mark Twain",
]
POSTS = [
    "I'm baking bread tonight. I've got flour, yeast and butter, and the oven is hot.",
    "Don't overwork the dough. I'd knead the bread for ten minutes, then let the yeast rise.",
    "We're roasting vegetables with butter and garlic in the oven; I'll add the bread later.",
    "I've tried sourdough bread twice. The yeast starter needs flour and water every day.",
    "My cake recipe: butter, sugar, flour, eggs. I'm baking it in the oven for forty minutes.",
    "You're right that bread needs salt. I'd add it to the flour before the yeast.",
]


def test_contractions_and_sentence_initial_pronouns_are_not_entities():
    text = (
        "I'm tired. I've been walking. Don't laugh. We'll see. He's Mary's brother, and "
        "They'd met Tom Baker in Paris. Hello I'm Sam. Let's ask O'Brien."
    )
    found = text_features.entities(text, common_lowercase={"hello"})
    assert found == ["Mary", "Tom_Baker", "Sam", "O'Brien"]
    assert not any(v in found for v in ("I'm", "I've", "Don't", "We'll", "He's", "They'd", "Let's", "I", "He"))


def test_style_recognises_quotations_and_attributions():
    for saying in SAYINGS:
        form = text_features.form(saying)
        assert form.attributions == 1, saying
        assert text_features.style(form) == "quotation" and text_features.genre(form) == "saying"
    # A dash inside a sentence, or a news attribution, is not a saying's attribution.
    for text in ("Shares rose - Reuters reported the figures on Monday.", "A well-Known author wrote it."):
        assert text_features.form(text).attributions == 0


def test_topic_names_come_from_content_words_only():
    assert naming_words("“I don't know, I'm sure we'll win.”\n― Daily Mail") == ["sure", "win"]
    texts = SAYINGS * 2 + POSTS * 2
    schema = AnnotationSchema(keys=["topic", "entity", "style"], max_tags=4)
    for words in (1, 2):
        config = OfflineConfig(topic_clusters=3, domain_clusters=1, topic_name_words=words, seed=0)
        annotator = OfflineAnnotator.fit([str(i) for i in range(len(texts))], texts, config, schema, progress=False)
        for name in annotator.topic_names:
            parts = name.split("_")
            assert len(parts) >= words and (words > 1 or len(parts) == 1 or parts[-1].isdigit()), name
            for part in parts:
                assert part.isdigit() or (part not in ENGLISH_STOP_WORDS and len(part) >= 3 and part.isalpha()), name
                assert part not in ("don", "ve", "ll", "seuss", "wilde", "monroe", "twain", "frost"), name
    tags = annotator.annotate([SAYINGS[0], POSTS[0]])
    assert ("style", "quotation") in [(t.key, t.value) for t in tags[0]]
    assert all(t.value not in ("I'm", "Don't") for t in tags[0] + tags[1])
