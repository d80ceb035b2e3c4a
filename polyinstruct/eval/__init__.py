"""polyinstruct.eval"""
