"""Question answering on slots (``python -m downstream.vqa``): questions and answers made from a video's ground
truth, the Aloe head's token layout (padding ignored, slots a set of tokens per frame), a head that learns what
the question asks, scores beside the blind guess, and the command end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from service_helpers import save_tiny_model

from downstream.aloe import PADDING, Aloe
from downstream.head_folder import model_label
from downstream.vqa import (
    ANSWERS,
    FAMILIES,
    WORDS,
    QuestionSet,
    VqaConfig,
    ask,
    fit_vqa,
    load_vqa,
    video_questions,
    vqa_scores,
)
from downstream.vqa.__main__ import main
from plugins.model_files import CONFIG_FILE, WEIGHTS_FILE
from training.datasets.synthetic import generate_video


def test_questions_are_answered_from_the_ground_truth():
    metadata = generate_video("medium", 5, 24, (64, 64)).metadata
    questions = video_questions(metadata)
    assert {question.family for question in questions} <= set(FAMILIES)
    by_text = {question.text: question.answer for question in questions}
    assert by_text["how many objects are there"] == str(len(metadata.objects))
    for obj in metadata.objects:
        if sum(other.colour == obj.colour for other in metadata.objects) == 1:
            assert by_text[f"what shape is the {obj.colour} object"] == obj.shape
            end = next(state for state in metadata.frames[-1] if state.object_id == obj.object_id)
            side = "left" if end.center_norm[0] < 0.5 else "right"
            assert by_text[f"is the {obj.colour} object on the left or right at the end"] == side
    before = {state.object_id: state.center_norm[0] for state in metadata.frames[-2]}
    moving = sum(state.center_norm[0] < before[state.object_id] for state in metadata.frames[-1])
    assert by_text["how many objects move to the left at the end"] == str(moving)
    for question in questions:
        assert all(WORDS[i] == word for i, word in zip(question.word_ids(), question.text.split(), strict=True))
        assert ANSWERS[question.answer_id] == question.answer


def test_the_end_is_the_last_frame_read_and_moving_what_the_frames_show():
    metadata = generate_video("medium", 7, 24, (64, 64)).metadata
    frames = [1, 5, 9]
    asked = {question.text: question.answer for question in video_questions(metadata, frames)}
    at_5 = {state.object_id: state.center_norm[0] for state in metadata.frames[5]}
    at_9 = {state.object_id: state.center_norm[0] for state in metadata.frames[9]}
    moved_left = sum(at_9[i] < at_5[i] for i in at_9)
    assert asked["how many objects move to the left at the end"] == str(moved_left)
    for obj in metadata.objects:
        if sum(other.colour == obj.colour for other in metadata.objects) == 1:
            side = "left" if at_9[obj.object_id] < 0.5 else "right"
            assert asked[f"is the {obj.colour} object on the left or right at the end"] == side
    with pytest.raises(ValueError, match="two or more increasing frames of the 24, got \\[3\\]"):
        video_questions(metadata, [3])


def test_the_frames_read_end_on_the_last_frame(tmp_path):
    """Slots of every second frame, counted back from the last: frames 1, 3, ..., 23 of a 24-frame video."""
    from downstream.vqa import question_set
    from plugins import VideoSlotModel
    from training.datasets.synthetic_dataset import SyntheticDataset

    model = VideoSlotModel.from_pretrained(save_tiny_model(tmp_path / "model"))
    videos = SyntheticDataset("easy", "val", None, model.image_size, num_videos=1)
    asked = question_set(model, videos, frame_stride=2)
    with torch.no_grad():
        every = model(videos[0].frames[None]).slots[0]  # [24, K, D]
    assert torch.equal(asked.slots[0], every[1::2])


def test_a_collision_question_follows_the_collision_events():
    """Seed 5's video: objects 1, 2, 3 and 5 collide with one another; object 4 (red) touches only a wall, which is
    not another object. Every object has a colour of its own, so each gets a question."""
    metadata = generate_video("medium", 5, 24, (64, 64)).metadata
    assert {i for event in metadata.collisions if event.kind == "object" for i in event.object_ids} == {1, 2, 3, 5}
    assert any(event.kind == "wall" and event.object_ids == (4,) for event in metadata.collisions)
    colours = {obj.object_id: obj.colour for obj in metadata.objects}
    asked = {q.text: q.answer for q in video_questions(metadata) if q.family == "collide"}
    assert asked == {
        f"does the {colours[i]} object collide with another object": "no" if i == 4 else "yes" for i in range(1, 6)
    }


def _head(**kwargs: int) -> Aloe:
    torch.manual_seed(0)
    return Aloe(6, words=10, answers=4, max_frames=3, max_slots=2, max_words=5, model_dim=16, layers=1, heads=2,
                ffn_dim=32, word_dim=4, **kwargs).eval()  # fmt: skip


def test_padding_words_do_not_change_the_answer_and_words_do():
    head = _head()
    slots = torch.randn(2, 3, 2, 6)
    short = torch.tensor([[3, 4, PADDING], [5, PADDING, PADDING]])
    longer = torch.tensor([[3, 4, PADDING, PADDING, PADDING], [5, PADDING, PADDING, PADDING, PADDING]])
    with torch.no_grad():
        assert torch.allclose(head(slots, short), head(slots, longer), atol=1e-6)
        assert not torch.allclose(head(slots, short), head(slots, torch.tensor([[3, 7, 0], [5, 0, 0]])), atol=1e-4)


def test_the_head_refuses_inputs_beyond_its_sizes():
    head = _head()
    with pytest.raises(ValueError, match=r"aloe reads slots \[B, T <= 3, K <= 2, 6\], got \[1, 4, 2, 6\]"):
        head(torch.randn(1, 4, 2, 6))
    with pytest.raises(ValueError, match=r"aloe reads questions \[1, L <= 5\], got \[1, 6\]"):
        head(torch.randn(1, 3, 2, 6), torch.ones(1, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="model_dim 10 is not a multiple of heads 4"):
        Aloe(6, model_dim=10, heads=4)
    with pytest.raises(ValueError, match="aloe reads word ids from 0 to 9, got ids from 3 to 10"):
        head(torch.randn(1, 3, 2, 6), torch.tensor([[3, 10]]))


def _counting_set(videos: int, seed: int) -> QuestionSet:
    """Videos of 3 slots, a slot "marked" when its first value is above 0 in the first frame. Two questions per
    video: word 1 asks how many are marked (answer ids 0, 1, 2 for none, one, two or more), word 2 whether slot 0
    is (answer id 3 for yes, 2 for no). The ids stand for these answers only here."""
    generator = torch.Generator().manual_seed(seed)
    slots = torch.randn(videos, 2, 3, 6, generator=generator)  # [V, T, K, D]
    red = slots[:, 0, :, 0] > 0  # [V, K] in the first frame
    rows, questions, answers = [], [], []
    for video in range(videos):
        rows += [video, video]
        questions += [[1, 0], [2, 0]]
        answers += [min(int(red[video].sum()), 2), 3 if bool(red[video, 0]) else 2]
    return QuestionSet(
        slots, torch.tensor(rows), torch.tensor(questions), torch.tensor(answers), ["count", "first"] * videos
    )


def test_a_trained_head_answers_what_each_question_asks_better_than_guessing():
    train, test = _counting_set(400, seed=0), _counting_set(100, seed=1)
    config = VqaConfig(model_dim=32, layers=2, heads=4, ffn_dim=64, steps=600, batch_size=64, lr=2e-3)
    head, loss = fit_vqa(train, config, progress=False)
    rows = {row.family: row for row in vqa_scores(head, test, train)}
    assert rows["all"].questions == 200 and loss < 0.6
    assert rows["first"].accuracy > 0.9 and rows["first"].accuracy > rows["first"].guess_accuracy + 0.3
    assert rows["count"].accuracy > rows["count"].guess_accuracy + 0.2


def test_the_command_trains_scores_and_saves_a_head_that_reads_back(tmp_path, capsys):
    model = save_tiny_model(tmp_path / "model")
    out = tmp_path / "vqa"
    argv = ["--model", str(model), "--out", str(out), "--data", "synthetic:easy", "--no-progress"]
    small = ["--train-videos", "3", "--test-videos", "2", "--steps", "3", "--model-dim", "16", "--heads", "2"]
    assert main([*argv, *small, "--layers", "1", "--ffn-dim", "32"]) == 0
    printed = capsys.readouterr().out
    assert "training questions about 3 videos" in printed and "        all" in printed
    assert {path.name for path in out.iterdir()} == {CONFIG_FILE, WEIGHTS_FILE, "scores.json", "scores.png"}
    scores = json.loads((out / "scores.json").read_text())
    assert scores["scores"][0]["family"] == "all" and scores["answers"] == list(ANSWERS)
    assert scores["model"] == str(model.resolve()), "an absolute path, which finds the model from anywhere"
    head, config = load_vqa(out)
    assert config["words"] == list(WORDS) and not head.training
    assert head.max_frames == 12  # 24 frames, every second one
    question = "what colour is the star"
    ids = torch.tensor([[WORDS.index(word) for word in question.split()]])
    generator = torch.Generator().manual_seed(0)
    for _ in range(100):  # slots whose odd and even frames the head answers differently: which ones ask reads shows
        slots = torch.randn(24, head.max_slots, head.slot_dim, generator=generator)  # [T, K, D]: every frame
        with torch.no_grad():
            odd, even = (ANSWERS[int(head(slots[None, first::2], ids).argmax())] for first in (1, 0))
        if odd != even:
            break
    else:
        pytest.fail("no slots found that the head answers differently from their odd and their even frames")
    assert ask(head, config, slots, "What colour is the star?") == odd  # frames 1, 3, ..., 23: ending on the last
    with pytest.raises(
        ValueError,
        match=r"reads at most 12 frames, one in 2 counted back from the last: give the slots of at most 24 ",
    ):
        ask(head, config, torch.randn(26, head.max_slots, head.slot_dim), question)
    with pytest.raises(ValueError, match=r"'banana': not among the head's words, which are: what colour is the"):
        ask(head, config, slots, "what colour is the banana")
    with pytest.raises(ValueError, match=r"ask takes the slots of every frame of one video, \[T, K, D\]"):
        ask(head, config, slots[None], question)


def test_a_frame_stride_leaving_one_frame_is_refused_naming_the_flag(tmp_path, capsys):
    model = save_tiny_model(tmp_path / "model")
    argv = ["--model", str(model), "--out", str(tmp_path / "vqa"), "--data", "synthetic:easy", "--no-progress"]
    assert main([*argv, "--train-videos", "1", "--test-videos", "1", "--steps", "1", "--frame-stride", "24"]) == 2
    err = capsys.readouterr().err
    assert "a frame stride of 24 reads 1 of the videos' 24 frames" in err
    assert "use a stride of at most 23 (--frame-stride)" in err and "Traceback" not in err


def test_the_command_refuses_data_without_ground_truth(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--model", str(tmp_path), "--out", str(tmp_path / "vqa"), "--data", "videos:/x"])
    assert exited.value.code == 2
    assert "questions are made from the objects' ground truth" in capsys.readouterr().err


def test_charts_name_a_training_runs_model_with_its_run(tmp_path):
    assert model_label(tmp_path / "runs" / "smoothsa" / "model") == "smoothsa/model"
    assert model_label(tmp_path / "runs" / "smoothsa" / "best") == "smoothsa/best"
    assert model_label(tmp_path / "default") == "default"
