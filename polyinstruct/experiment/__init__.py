"""polyinstruct.experiment"""
