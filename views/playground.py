"""Playground page: try a compiled artifact on your own input, with eager PyTorch's latency beside it."""

import html

import streamlit as st

from studio import charts, playground, ui
from studio.playground_images import image_generation
from studio.playground_ui import form, last_result, latency_row, loaded_artifact, run

DEFAULT_SENTENCES = "A man is eating food.\nA man is eating a piece of bread.\nThe girl is carrying a baby.\nA man is riding a horse."


# ---- one renderer per view kind (registry TaskSpec.views) ---------------------------------------


def text_labels(loaded: playground.LoadedArtifact) -> None:
    form(loaded, "Classify", lambda: (st.text_area("Text", "Hamilton is considered to be the best musical of human history."),))
    if result := last_result(loaded):
        scores, stats = result
        st.metric("Label", scores[0][0], f"{scores[0][1]:.1%}", delta_color="off", delta_arrow="off")
        st.plotly_chart(charts.scores_figure(scores, "Labels"), width="stretch")
        latency_row(loaded, stats)


def entities(loaded: playground.LoadedArtifact) -> None:
    form(loaded, "Tag entities", lambda: (st.text_area("Text", "My name is Mary Smith, I work at Google in London."),))
    if result := last_result(loaded):
        segments, stats = result
        st.html(playground.entities_html(segments))
        tagged = [s for s in segments if s.entity]
        if tagged:
            st.dataframe([{"Entity": s.text, "Type": s.entity, "Score": s.score} for s in tagged], hide_index=True,
                         column_config={"Score": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="percent")})
        else:
            st.caption("No entity found.")
        latency_row(loaded, stats)


def answer_span(loaded: playground.LoadedArtifact) -> None:
    _, context = form(loaded, "Answer", lambda: (
        st.text_input("Question", "Where does Mary work?"),
        st.text_area("Context", "Mary Smith lives in Paris. She works at Google in London and loves music."),
    ))
    if result := last_result(loaded):
        answer, stats = result
        st.metric("Answer", answer.text or "(empty)", f"{answer.score:.1%} likely", delta_color="off", delta_arrow="off")
        st.html(playground.highlight_html(context, answer.start, answer.end))
        latency_row(loaded, stats)


def fill_mask(loaded: playground.LoadedArtifact) -> None:
    mask = loaded.processor.mask_token or "[MASK]"
    (text,) = form(loaded, "Fill the mask", lambda: (st.text_input(f"Sentence with {mask}", f"Paris is the {mask} of France."),))
    if result := last_result(loaded):
        tokens, stats = result
        st.markdown(f"**Best fill:** {text.replace(mask, f'**`{tokens[0][0]}`**', 1)}")
        st.plotly_chart(charts.scores_figure(tokens, f"Top {len(tokens)} tokens for {mask}"), width="stretch")
        latency_row(loaded, stats)


def similarity(loaded: playground.LoadedArtifact) -> None:
    form(loaded, "Embed and compare", lambda: (st.text_area("Sentences, one per line", DEFAULT_SENTENCES, height=150),))
    if result := last_result(loaded):
        sentences, embeddings, matrix, stats = result
        st.plotly_chart(charts.similarity_figure(sentences, matrix.tolist()), width="stretch")
        pooling = "the model's own pooling" if loaded.manifest.library == "sentence_transformers" else "mean of the token embeddings"
        st.caption(f"{embeddings.shape[1]}-dimensional embeddings ({pooling}); cosine similarity from -1 to 1.")
        with st.expander("Similarity values"):
            similarity_table(sentences, matrix)
        latency_row(loaded, stats)


def similarity_table(sentences: list[str], matrix) -> None:
    """Rows and columns both numbered from 1 (a column's header tip is its sentence)."""
    import pandas

    numbers = [str(i + 1) for i in range(len(sentences))]
    table = pandas.DataFrame(matrix.tolist(), columns=numbers, index=pandas.Index(numbers, name="#"))
    table.insert(0, "Sentence", sentences)
    st.dataframe(table, column_config={"#": st.column_config.TextColumn(width="small"),
                                       **{n: st.column_config.NumberColumn(format="%.3f", help=sentence)
                                          for n, sentence in zip(numbers, sentences)}})


def choices(loaded: playground.LoadedArtifact) -> None:
    limit = loaded.shapes.get("num_choices")
    form(loaded, "Choose", lambda: (
        st.text_input("Prompt", "The cat sat on the"),
        st.text_area(f"Choices, one per line (at most {limit})", "mat\nmoon\ncomputer"),
    ))
    if result := last_result(loaded):
        scores, stats = result
        best = max(scores, key=lambda item: item[1])
        st.metric("Most likely choice", best[0], f"{best[1]:.1%}", delta_color="off", delta_arrow="off")
        st.plotly_chart(charts.scores_figure(scores, "Choices"), width="stretch")
        latency_row(loaded, stats)


def image_field() -> tuple:
    return (st.file_uploader("Image (PNG, JPEG or WebP); without one, the generated sample picture is used",
                             type=["png", "jpg", "jpeg", "webp"]),)


def image_and_labels(loaded: playground.LoadedArtifact, image, labels, stats, best: str, title: str) -> None:
    """The input image beside its best label and the chart of the labels' probabilities."""
    picture, scores = st.columns([1, 2])
    picture.image(image, caption="input", width="stretch")
    with scores:
        st.metric(best, labels[0][0], f"{labels[0][1]:.1%}", delta_color="off", delta_arrow="off")
        st.plotly_chart(charts.scores_figure(labels, title), width="stretch")
    latency_row(loaded, stats)


def image_labels(loaded: playground.LoadedArtifact) -> None:
    form(loaded, "Classify", image_field)
    if result := last_result(loaded):
        image_and_labels(loaded, *result, best="Label", title="Top labels")


def generation_settings(loaded: playground.LoadedArtifact, default_tokens: int = 32) -> tuple[dict, bool]:
    """transformers' generate settings (greedy unless sampling is on), and whether to run eager transformers too."""
    length = int(loaded.shapes["sequence_length"])
    with st.expander("Generation settings"):
        tokens_col, sample_col, penalty_col = st.columns(3)
        settings = {"max_new_tokens": tokens_col.slider("Max new tokens", 1, length, min(default_tokens, length // 2)),
                    "repetition_penalty": penalty_col.slider("Repetition penalty", 1.0, 2.0, 1.0, 0.05)}
        if sample_col.toggle("Sample (off: greedy)"):
            temperature, top_k, top_p = st.columns(3)
            settings.update(do_sample=True, temperature=temperature.slider("Temperature", 0.1, 2.0, 0.7, 0.05),
                            top_k=top_k.slider("Top-k (0: off)", 0, 200, 50), top_p=top_p.slider("Top-p", 0.05, 1.0, 0.95, 0.05))
        else:
            settings["do_sample"] = False
    compare = st.checkbox("Compare with eager transformers (same prompt, settings and seed)", value=loaded.eager is not None,
                          disabled=loaded.eager is None)
    return settings, compare


def generation_row(loaded: playground.LoadedArtifact, result: playground.Generated) -> None:
    compiled, eager = result.compiled, result.eager
    first, speed, per_token, match = st.columns(4)
    first.metric("Time to first token", ui.fmt_ms(compiled.first_token_s), help="compiled model; prompt graph + first token")
    speed.metric("Tokens/s", f"{compiled.tokens_per_s:.1f}" if compiled.tokens_per_s else "—", help=f"{compiled.tokens} new tokens")
    per_token.metric("Per token", ui.fmt_ms(compiled.per_token_s), help="mean decode step after the first token")
    if result.tokens_match is None:
        match.metric("Tokens match eager", "—", help="eager comparison off or unavailable")
    else:
        where = "" if result.tokens_match else f" (from new token {result.first_difference + 1})"
        match.metric("Tokens match eager", "yes" if result.tokens_match else "no" + where)
    if eager is not None:
        speed_eager = f"{eager.tokens_per_s:.1f}" if eager.tokens_per_s else "—"
        st.caption(f"Eager transformers: time to first token {ui.fmt_ms(eager.first_token_s)}, {speed_eager} tokens/s, "
                   f"{ui.fmt_ms(eager.per_token_s)} per token. Compiled: {loaded.manifest.backend}.")
    for note in result.notes:
        st.caption(f":material/info: {note}")


def chat(loaded: playground.LoadedArtifact) -> None:
    settings, compare = generation_settings(loaded)
    history = st.session_state.setdefault(f"chat:{loaded.path}:{loaded.manifest.created}", [])
    if history and st.button("Clear the conversation"):
        history.clear()
    for message in history:
        st.chat_message(message["role"]).markdown(message["content"])
    if prompt := st.chat_input("Message the model"):
        history.append({"role": "user", "content": prompt})
        st.chat_message("user").markdown(prompt)
        with st.chat_message("assistant"):
            streamed = st.empty()  # the reply as it is generated
            run(loaded, history, settings, compare, streamed.markdown)
            result = last_result(loaded)
            if result is None:
                history.pop()  # failed (the error is shown): the message can be edited and sent again
                return
            streamed.markdown(result.text or "*(no text)*")
        history.append({"role": "assistant", "content": result.text})
    if result := last_result(loaded):
        generation_row(loaded, result)


def text_to_text(loaded: playground.LoadedArtifact) -> None:
    form(loaded, "Generate", lambda: (
        st.text_area("Text", "Paris is the capital of France. The city is known for its museums and its food.", height=120),
        st.selectbox("Task", list(playground.T5_TASKS)),
        *generation_settings(loaded),
    ))
    if result := last_result(loaded):
        st.text_area("Output", result.text, disabled=True)
        generation_row(loaded, result)


def audio_fields() -> tuple:
    """A recording, or a WAV file; without either the generated sample is used."""
    recording = st.audio_input("Record (or upload a WAV below; without either, a generated sample is used)")
    upload = st.file_uploader("WAV file", type=["wav"])
    return recording, upload


def waveform(loaded: playground.LoadedArtifact, clip: playground.Clip) -> None:
    st.plotly_chart(charts.waveform_figure(clip.samples, clip.sampling_rate, f"Waveform of {clip.source} ({clip.seconds:.2f} s)"),
                    width="stretch")
    limit = loaded.shapes.get("audio_sequence_length")
    if limit:
        st.caption(f"Compiled for {limit} samples ({limit / clip.sampling_rate:.2f} s at {clip.sampling_rate} Hz): shorter clips are "
                   "padded, longer ones cut.")


def audio_labels(loaded: playground.LoadedArtifact) -> None:
    form(loaded, "Classify", audio_fields)
    if result := last_result(loaded):
        clip, labels, stats = result
        waveform(loaded, clip)
        st.metric("Label", labels[0][0], f"{labels[0][1]:.1%}", delta_color="off", delta_arrow="off")
        st.plotly_chart(charts.scores_figure(labels, "Top labels"), width="stretch")
        latency_row(loaded, stats)


def transcript(loaded: playground.LoadedArtifact) -> None:
    form(loaded, "Transcribe", audio_fields)
    if result := last_result(loaded):
        clip, text, stats = result
        waveform(loaded, clip)
        st.markdown("**Transcript**")
        st.code(text or "(nothing recognised)", language=None, wrap_lines=True)
        latency_row(loaded, stats)


def detection(loaded: playground.LoadedArtifact) -> None:
    form(loaded, "Detect", image_field)
    if result := last_result(loaded):
        image, detections, stats = result
        threshold = st.slider("Score threshold", 0.0, 1.0, 0.5, 0.01, help="boxes scoring below it are hidden")
        shown = [d for d in detections if d.score >= threshold]
        st.image(playground.draw_boxes(image, shown), caption=f"{len(shown)} of {len(detections)} boxes above {threshold:.0%}",
                 width="stretch")
        if shown:
            st.dataframe([{"Label": d.label, "Score": d.score, "Box (x0, y0, x1, y1)": ", ".join(f"{v:.0f}" for v in d.box)}
                          for d in shown], hide_index=True,
                         column_config={"Score": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="percent")})
        latency_row(loaded, stats)


def segmentation(loaded: playground.LoadedArtifact) -> None:
    form(loaded, "Segment", image_field)
    if result := last_result(loaded):
        image, overlaid, segments, stats = result
        picture, masks = st.columns(2)
        picture.image(image, caption="input", width="stretch")
        masks.image(overlaid, caption="classes", width="stretch")
        st.html("".join(f'<span style="display:inline-block;margin:0 1em 0.3em 0"><span style="display:inline-block;width:0.9em;'
                        f'height:0.9em;background:{color};border-radius:0.2em;margin-right:0.35em"></span>{html.escape(label)} '
                        f"({share:.0%})</span>" for label, color, share in segments.legend))
        latency_row(loaded, stats)


def depth(loaded: playground.LoadedArtifact) -> None:
    form(loaded, "Estimate depth", image_field)
    if result := last_result(loaded):
        image, depth_map, stats = result
        picture, chart = st.columns([1, 2])
        picture.image(image, caption="input", width="stretch")
        chart.plotly_chart(charts.depth_figure(depth_map.tolist()), width="stretch")
        latency_row(loaded, stats)


def zero_shot(loaded: playground.LoadedArtifact) -> None:
    most = loaded.shapes.get("text_batch_size")
    form(loaded, "Classify", lambda: (*image_field(), st.text_input(f"Labels, separated by commas (2 to {most})",
                                                                    "a photo of a house, a photo of a cat, a photo of the sea")))
    if result := last_result(loaded):
        image_and_labels(loaded, *result, best="Best label", title="Labels")


def speech_to_text(loaded: playground.LoadedArtifact) -> None:
    form(loaded, "Transcribe", lambda: (*audio_fields(), *generation_settings(loaded, default_tokens=64)))
    if result := last_result(loaded):
        clip, generated = result
        waveform(loaded, clip)
        st.audio(clip.samples, sample_rate=clip.sampling_rate)
        st.text_area("Transcript", generated.text, disabled=True)
        generation_row(loaded, generated)


# View kind -> its renderer; playground.VIEW_RUNNERS has the function that runs each.
VIEWS = {
    "text-labels": text_labels,
    "entities": entities,
    "answer-span": answer_span,
    "masked-word": fill_mask,
    "similarity": similarity,
    "choices": choices,
    "image-labels": image_labels,
    "image-generation": image_generation,
    "chat": chat,
    "text-to-text": text_to_text,
    "speech-to-text": speech_to_text,
    "audio-labels": audio_labels,
    "transcript": transcript,
    "detection": detection,
    "segmentation": segmentation,
    "depth": depth,
    "zero-shot": zero_shot,
}


def main() -> None:
    st.title("Playground")
    st.caption("Run a compiled artifact on your own input; every run also times the eager PyTorch model it came from.")
    services = ui.services()
    ui.hub_download(services)
    picked = ui.artifact_header(services.workspace, key="playground_artifact",
                                accept=lambda manifest: playground.artifact_view(manifest) in VIEWS)
    if picked is None:
        return
    path, manifest = picked
    st.caption(f"{manifest.source} · {manifest.task} · compiled for {ui.shapes_summary(manifest)}")
    if playground.random_weights_demo(manifest):
        st.warning(f"{manifest.source} is a demo model with random weights: its outputs are meaningless. "
                   "It is here to try the tool; the latencies are real.", icon=":material/casino:")
    trusted = ui.remote_code_consent(manifest, "playground")
    try:
        loaded = loaded_artifact(str(path), manifest.created, str(services.workspace.demo_dir), trusted)
    except Exception as error:  # cannot run here, missing files, ...: the page stays usable
        ui.show_error(error)
        return
    if loaded.eager_note:
        st.info(loaded.eager_note, icon=":material/info:")
    ui.placement_caption(playground.placement(loaded))
    VIEWS[loaded.view](loaded)


main()
