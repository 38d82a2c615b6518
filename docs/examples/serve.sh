mltag serve                                   # every stored photo; prints http://127.0.0.1:PORT/
mltag serve ~/photos/asylum --open            # the photos under a folder, opened in the browser
mltag serve --store other.sqlite --port 8800 --who anna
