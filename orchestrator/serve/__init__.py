"""`mltag serve`: a local web app over the results store: browse the archive, label the truth, rank the models.

    index.py     the browse index (tags, statuses, agreement, folders) in the user's cache folder
    thumbs.py    thumbnails on demand, cached by sha256 in the user's cache folder
    photos.py    one photo: the models side by side and the chips to label
    queue.py     'label next': the store's queue, computed on a background thread
    security.py  Host, token and same-origin checks
    app.py       the Starlette app (pages, JSON API, thumbnails; the ranking is evaluate_store, as `mltag eval`)
    server.py    opening everything and running uvicorn

Only `mltag serve` imports this package (and with it Starlette and uvicorn): every other command
starts as fast as before (tests/unit/test_serve.py checks it).
"""
