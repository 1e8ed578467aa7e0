# SPDX-License-Identifier: MIT
# Compiles SOURCE, which must fail, and checks that the first error the compiler prints is
# mp's own message: the line holding the first "error:" must contain "mp:" and the text
# after "// expect: " in SOURCE. Run by CTest (see CMakeLists.txt); CXX, FLAGS (a list) and
# SOURCE are set with -D.
file(STRINGS "${SOURCE}" expect_line REGEX "^// expect: " LIMIT_COUNT 1)
if(NOT expect_line)
  message(FATAL_ERROR "${SOURCE} has no '// expect: ' line")
endif()
string(REGEX REPLACE "^// expect: " "" expected "${expect_line}")
execute_process(
  COMMAND ${CXX} ${FLAGS} -fsyntax-only "${SOURCE}"
  RESULT_VARIABLE status
  ERROR_VARIABLE output
  OUTPUT_VARIABLE output_stdout)
if(status EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled, but it must not")
endif()
string(REGEX MATCH "[^\n]*error:[^\n]*" first_error "${output}")
string(REGEX MATCHALL "\n" newlines "${output}")
list(LENGTH newlines line_count)
if(NOT first_error MATCHES "mp:" OR NOT first_error MATCHES "${expected}")
  message(FATAL_ERROR "the first error is not mp's message '${expected}':\n${first_error}\n"
                      "--- whole output (${line_count} lines):\n${output}")
endif()
message(STATUS "first error is mp's (${line_count} lines in all): ${first_error}")
