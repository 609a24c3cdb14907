"""What the eval commands read and write: labelled or logged tables (`tables`), models from a folder
or the registry (`models`), Markdown/HTML reports (`report`).
"""
