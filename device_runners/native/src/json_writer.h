// Minimal one-line JSON object writer for the runner's single result document.
#ifndef LLM_RUNNER_JSON_WRITER_H_
#define LLM_RUNNER_JSON_WRITER_H_

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace llm_runner {

class JsonWriter {
 public:
  JsonWriter() : out_("{") {}

  // A const char* overload is needed: it would otherwise convert to bool.
  void Field(const char* key, const char* value) { Key(key); String(value); }
  void Field(const char* key, const std::string& value) {
    Key(key);
    String(value);
  }
  void Field(const char* key, bool value) {
    Key(key);
    out_ += value ? "true" : "false";
  }
  void Field(const char* key, int value) {
    Field(key, static_cast<long long>(value));
  }
  void Field(const char* key, long long value) {
    Key(key);
    out_ += std::to_string(value);
  }
  void Field(const char* key, double value) {
    Key(key);
    Number(value);
  }
  void Field(const char* key, const std::vector<long long>& values) {
    BeginArray(key);
    for (size_t i = 0; i < values.size(); ++i) {
      if (i != 0) out_ += ',';
      out_ += std::to_string(values[i]);
    }
    EndArray();
  }
  void Field(const char* key, const std::vector<double>& values) {
    BeginArray(key);
    for (size_t i = 0; i < values.size(); ++i) {
      if (i != 0) out_ += ',';
      Number(values[i]);
    }
    EndArray();
  }
  void Field(const char* key, const std::vector<std::string>& values) {
    BeginArray(key);
    for (const std::string& value : values) Element(value);
    EndArray();
  }
  void NullField(const char* key) {
    Key(key);
    out_ += "null";
  }

  void BeginArray(const char* key) {
    Key(key);
    Open('[');
  }
  // An array element of the enclosing array.
  void BeginArray() {
    Comma();
    Open('[');
  }
  void EndArray() { Close(']'); }
  // Scalar elements of the enclosing array.
  void Element(const std::string& value) {
    Comma();
    String(value);
  }
  void Element(long long value) {
    Comma();
    out_ += std::to_string(value);
  }
  void NullElement() {
    Comma();
    out_ += "null";
  }
  // An object element of the enclosing array.
  void BeginObject() {
    Comma();
    Open('{');
  }
  // An object-valued field of the enclosing object.
  void BeginObject(const char* key) {
    Key(key);
    Open('{');
  }
  void EndObject() { Close('}'); }

  std::string Finish() { return out_ + "}"; }

 private:
  void Comma() {
    if (need_comma_) out_ += ',';
    need_comma_ = true;
  }
  void Key(const char* key) {
    if (need_comma_) out_ += ',';
    String(key);
    out_ += ':';
    need_comma_ = true;  // the value follows directly
  }
  // Non-finite numbers have no JSON spelling and become null.
  void Number(double value) {
    if (!std::isfinite(value)) {
      out_ += "null";
      return;
    }
    char text[32];
    std::snprintf(text, sizeof(text), "%.9g", value);
    out_ += text;
  }
  void Open(char bracket) {
    out_ += bracket;
    need_comma_ = false;
  }
  void Close(char bracket) {
    out_ += bracket;
    need_comma_ = true;
  }
  void String(const std::string& value) {
    out_ += '"';
    for (unsigned char c : value) {
      if (c == '"' || c == '\\') {
        out_ += '\\';
        out_ += static_cast<char>(c);
      } else if (c < 0x20) {
        char escaped[8];
        std::snprintf(escaped, sizeof(escaped), "\\u%04x", c);
        out_ += escaped;
      } else {
        out_ += static_cast<char>(c);
      }
    }
    out_ += '"';
  }

  std::string out_;
  bool need_comma_ = false;
};

}  // namespace llm_runner

#endif  // LLM_RUNNER_JSON_WRITER_H_
