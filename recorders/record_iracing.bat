@echo off
rem PitBox: record every iRacing session live (and import the .ibt files it writes).
rem Double-click to start; press Ctrl-C to stop (the open session is finished and stored).
rem Extra arguments go to "pitbox record". Uses ..\.venv when there is one, else "python" on PATH.
rem If the recorder stops with an error (a full disk, say), it starts again after 5 s and first
rem recovers what was recorded; close the window to quit. It runs at "above normal" priority so that
rem other programs do not hold it off long enough to miss ticks (iRacing keeps only 3 rows).
setlocal
set "HERE=%~dp0"
set "PY=%HERE%..\.venv\Scripts\python.exe"
if not exist "%PY%" set "PY=python"
:again
start "" /b /wait /abovenormal "%PY%" "%HERE%record_iracing.py" %*
if not errorlevel 1 goto end
echo The recorder stopped with an error (exit code %errorlevel%). Restarting in 5 s; close this window to quit.
timeout /t 5 >nul
goto again
:end
endlocal
