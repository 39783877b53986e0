// llm_runner's command-line entry point; everything else is in RunMain.
#include "run_main.h"

int main(int argc, char** argv) { return llm_runner::RunMain(argc, argv); }
