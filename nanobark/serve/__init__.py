"""`nanobark serve`: an OpenAI-compatible speech API over one Bark model, batching requests that wait together.

    app.py      routes, OpenAI-shaped errors, the API key, body limits
    speech.py   what a speech request may say, checked; OpenAI's voice names
    worker.py   the thread that owns the model and batches segments across requests
    formats.py  wav, flac, mp3, opus, pcm: whole or streamed
    store.py    the cloned voices, on disk
    page.html   the page at /

Needs the `serve` extra (FastAPI, uvicorn, python-multipart): pip install "nanobark[serve]".
"""
