"""polyinstruct.judge"""
