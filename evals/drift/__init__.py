"""`tierroute drift`: the checks (`checks`, `embedding`), the command's flow (`run`), the report
(`report`), and the drift benchmark with synthetic shifts (`bench`, `synthetic`).
"""
