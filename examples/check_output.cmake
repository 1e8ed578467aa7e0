# SPDX-License-Identifier: MIT
# Runs one example for CTest: passes if the program exits with 0 and its standard output
# matches the given regular expressions in order, each after the previous match.
#   cmake -DPROGRAM=<path> [-DSERVER=<path>;<arg>...] [-DLAUNCHER=<path>;<arg>...]
#         -P check_output.cmake -- <regex>...
# LAUNCHER runs the program (mpiexec and its arguments, for the MPI examples).

set(expected)
set(after_separator FALSE)
math(EXPR last "${CMAKE_ARGC} - 1")
foreach(i RANGE ${last})
  if(after_separator)
    list(APPEND expected "${CMAKE_ARGV${i}}")
  elseif(CMAKE_ARGV${i} STREQUAL "--")
    set(after_separator TRUE)
  endif()
endforeach()

if(DEFINED SERVER)
  # A pair: SERVER (a ;-list: the program and its arguments) writes into PROGRAM's standard
  # input, and both must exit with 0.
  execute_process(COMMAND ${SERVER} COMMAND "${PROGRAM}"
    INPUT_FILE /dev/null
    OUTPUT_VARIABLE output ECHO_OUTPUT_VARIABLE
    ERROR_VARIABLE errors ECHO_ERROR_VARIABLE
    RESULTS_VARIABLE statuses)
  if(NOT statuses STREQUAL "0;0")
    message(FATAL_ERROR "${SERVER} | ${PROGRAM} ended with statuses '${statuses}'")
  endif()
else()
  execute_process(COMMAND ${LAUNCHER} "${PROGRAM}"
    INPUT_FILE /dev/null
    OUTPUT_VARIABLE output ECHO_OUTPUT_VARIABLE
    ERROR_VARIABLE errors ECHO_ERROR_VARIABLE
    RESULT_VARIABLE status)
  if(NOT status STREQUAL "0")
    message(FATAL_ERROR "${PROGRAM} ended with status '${status}'")
  endif()
endif()

set(rest "${output}")
foreach(regex IN LISTS expected)
  string(REGEX MATCH "${regex}" match "${rest}")
  if(match STREQUAL "")
    message(FATAL_ERROR "the output has no match for '${regex}' after the previous match")
  endif()
  # The leftmost match is also the first occurrence of its text.
  string(FIND "${rest}" "${match}" at)
  string(LENGTH "${match}" length)
  math(EXPR at "${at} + ${length}")
  string(SUBSTRING "${rest}" ${at} -1 rest)
endforeach()
