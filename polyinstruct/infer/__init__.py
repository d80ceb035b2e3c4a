"""polyinstruct.infer"""
