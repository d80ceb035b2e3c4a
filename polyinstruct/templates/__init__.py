"""polyinstruct.templates"""
