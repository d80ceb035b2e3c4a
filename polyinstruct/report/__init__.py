"""polyinstruct.report"""
