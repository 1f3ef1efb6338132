"""jupyter_kernel_test's conformance suite against the nbjob kernel, with TypeScript samples.

Run by test/kernel-conformance.test.ts with Debian's /usr/bin/python3, after the nbjob
kernelspec was installed into a private JUPYTER_DATA_DIR. Every test has a sample: none may skip.
"""
import unittest

import jupyter_kernel_test


class NbjobKernelTests(jupyter_kernel_test.KernelTests):
    kernel_name = "nbjob"
    language_name = "typescript"
    file_extension = ".ts"

    code_hello_world = 'console.log("hello, world")'
    code_stderr = 'console.error("something went sideways")'

    # Matches are compared as a set, so each sample's prefix has exactly these members.
    completion_samples = [
        {"text": "Math.ma", "matches": {"max"}},
        {"text": '"abc".toUpperC', "matches": {"toUpperCase"}},
    ]

    complete_code_samples = ["1 + 1", "let done = true;", "function twice(n: number) { return 2 * n; }"]
    incomplete_code_samples = ["function twice(n: number) {", "const xs = [1, 2,", "if (true) {"]
    invalid_code_samples = ["const = 5;", "1 +* 2"]

    code_page_something = "Math.max?"

    code_generate_error = 'throw new Error("boom")'

    code_execute_result = [
        {"code": "1 + 2", "result": "3"},
        {"code": '"con" + "cat"', "result": "'concat'"},
    ]
    code_history_pattern = "1 + *"
    supported_history_operations = ("tail", "range", "search")

    code_display_data = [
        {"code": 'display.html("<b>bold</b>")', "mime": "text/html"},
        {"code": 'display.markdown("# title")', "mime": "text/markdown"},
    ]

    code_inspect_sample = "Math.max"

    code_clear_output = "display.clear()"


if __name__ == "__main__":
    unittest.main()
