# SPDX-License-Identifier: Apache-2.0
#
# The INPUT_FILTER of docs/Doxyfile: the headers' comments are plain text,
# and three of their habits mean something else to doxygen. They are
# rewritten on the way in (line for line, so warnings point at the right
# line), and the headers need no escapes.

# "e.g. " and "i.e. " would end the brief description (JAVADOC_AUTOBRIEF
# ends it at the first ". "): doxygen's "\ " is a space that does not.
s/\(e\.g\|i\.e\)\.\( \|$\)/\1.\\ /g

# In a comment, "::name" standing alone (WaitStatus::timed_out or
# ::no_publisher) is an explicit link request to a global `name`; "\::" is
# the literal "::". Code (::shmbus::detail::...) is left alone.
/^ *\(\*\|\/\/\/\)/s/\(^\|[ (]\)::\([A-Za-z_]\)/\1\\::\2/g

# The sections of a long comment, " * ---- Errors ------": a heading.
s/^ \* ---- \(.*[^ ]\) -\{3,\}$/ * ### \1/
