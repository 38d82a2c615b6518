"""INTERFACE STAND-INS, not upstream code: remote-code files written here from the models' documented
APIs, for models whose real repository code is not available offline (see ../shared/upstream/*/SOURCE.md).
The tiny builders copy them into a snapshot as the model repository's code; tests using them say so."""
