@echo off
rem PitBox: import each new .ibt from iRacing's telemetry folder once iRacing has finished it.
rem Double-click to start; close the window or press Ctrl-C to stop. Extra arguments go to "pitbox watch".
setlocal
set "HERE=%~dp0"
set "PY=%HERE%..\.venv\Scripts\python.exe"
if not exist "%PY%" set "PY=python"
"%PY%" "%HERE%watch_telemetry.py" %*
endlocal
